import { ClusterUnavailableError } from '../errors.js';

/**
 * Runs one Redis operation. A failure to reach Redis (connection closed, command timed out, retries
 * used up) becomes ClusterUnavailableError, a ProtocolError UNAVAILABLE the client can retry; an
 * error Redis itself answered (a ReplyError: a bug, a wrong type) stays as it is.
 */
export async function redisCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Error && (err.name === 'ReplyError' || err instanceof TypeError)) throw err;
    if (err instanceof ClusterUnavailableError) throw err;
    throw new ClusterUnavailableError(what, { cause: err });
  }
}
