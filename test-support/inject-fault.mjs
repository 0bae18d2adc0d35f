// Preloaded into a child server by boundary-process.test.ts: once the server listens, causes the
// fault named by VOICE_TEST_FAULT where no boundary can catch it, to test main.ts's process policy.
const fault = process.env.VOICE_TEST_FAULT;
const timer = setInterval(() => {
  if (!globalThis.__voiceListening) return;
  clearInterval(timer);
  if (fault === 'rejection') void Promise.reject(new Error('injected: nobody awaits this'));
  if (fault === 'exception')
    setTimeout(() => {
      throw new Error('injected: thrown from a timer');
    }, 0);
}, 50);
timer.unref();
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  if (String(chunk).includes('voice server listening')) globalThis.__voiceListening = true;
  return write(chunk, ...rest);
};
