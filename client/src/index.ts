export * from './signaling.js';
export * from './rest.js';
export * from './voice/index.js';
export * from './audio/index.js';
