/** Nothing global yet beyond a sanity check: the suite needs the native uWebSockets.js binary. */
export default function setup(): void {
  if (!process.versions.node.startsWith('20.') && process.env.VOICE_ALLOW_UWS_FALLBACK !== '1') {
    process.stderr.write(
      `warning: tests expect Node 20 (uWebSockets.js native binary); this is ${process.version}\n`,
    );
  }
}
