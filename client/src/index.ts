export * from './signaling.js';
export * from './rest.js';
