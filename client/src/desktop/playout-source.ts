import type { PullSource } from '../audio/types.js';
import type { VoiceClient } from '../voice/voice-client.js';

/**
 * The voice client's pull-driven playout as the audio engine's source: the speaker's clock pulls
 * each period, and the jitter buffer's depth and target (48 kHz samples) steer the engine's
 * resampler, so the device clock follows the network's. Silence while there is no client or session.
 */
export class PlayoutSource implements PullSource {
  /** Used while no session runs: the level then equals it, so the drift loop holds still. */
  static readonly IDLE_TARGET = 960;

  constructor(private readonly client: () => VoiceClient | null) {}

  pull(out: Int16Array): void {
    const c = this.client();
    if (c && !c.isClosed) c.pull(out);
    else out.fill(0);
  }

  levelSamples(): number {
    const p = this.client()?.voice?.playout;
    return p ? p.jitter.depth * p.frameSamples : PlayoutSource.IDLE_TARGET;
  }

  get targetSamples(): number {
    const p = this.client()?.voice?.playout;
    return p ? p.jitter.target * p.frameSamples : PlayoutSource.IDLE_TARGET;
  }
}
