import { RequestError } from '../client/src/index.js';

/** The stable error code a request fails with; throws if it succeeds or fails otherwise. */
export async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RequestError) return e.code;
    throw e;
  }
  throw new Error('expected a RequestError');
}
