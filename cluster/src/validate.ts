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
