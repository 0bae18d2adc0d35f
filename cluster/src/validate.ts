import { ProtocolError } from '@voice/protocol';
import type { z } from 'zod';

/** Parses with a schema or throws INVALID_FIELD naming the first bad field. */
export function parseOr400<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new ProtocolError(
    'INVALID_FIELD',
    `${what}: ${issue?.path.join('.') || '(body)'}: ${issue?.message ?? 'invalid'}`,
  );
}

/**
 * Parses a REST path parameter (`:id` in the route) or throws INVALID_FIELD naming it as such: a
 * client reading the message must look at its URL, not at a body it may not even have sent.
 */
export function parseParam<S extends z.ZodType>(schema: S, value: unknown, key: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ProtocolError(
    'INVALID_FIELD',
    `path parameter ${key}: ${r.error.issues[0]?.message ?? 'invalid'}`,
  );
}
