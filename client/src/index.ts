export * from './signaling.js';
export * from './rest.js';
export * from './voice/index.js';
export * from './audio/index.js';
export * from './desktop/playout-source.js';
