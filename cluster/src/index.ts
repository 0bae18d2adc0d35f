export { startServer, type RunningServer, type StartOptions } from './server.js';
export { loadConfig, ConfigSchema, type Config, type ConfigInput } from './config.js';
export * from './errors.js';
export type * from './state/types.js';
