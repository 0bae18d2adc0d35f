// The protocol-only signaling client lives with the load generators, which use it too.
export { RawSignaling } from '../loadtest/src/raw-signaling.js';
