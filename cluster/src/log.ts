import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/** Structured JSON logs, one line per event, to stdout (or a given stream for tests). */
export function createLogger(config: Pick<Config, 'logLevel' | 'nodeId'>, dest?: DestinationStream): Logger {
  return pino(
    { level: config.logLevel, base: { node: config.nodeId }, timestamp: pino.stdTimeFunctions.isoTime },
    dest,
  );
}
