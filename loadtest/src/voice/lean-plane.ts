import { createSocket, type Socket } from 'node:dgram';
import {
  MAX_PACKET_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
  encodeTimeBody,
  type AeadBackend,
  type VoiceBinding,
} from '@voice/protocol';
import { Ticker, loadNativeAead, type OpusFactory } from '@voice/media';
import { encodeToneFrames } from './tone-frames.js';

/**
 * The cheapest voice users the generator has: registered over UDP like a client, speakers sending
 * one second of pre-encoded Opus in a loop, everyone counting packets received, nothing decoded and
 * no jitter buffer. One ticker sends for every speaker of the process, at `phases` instants spread
 * over each 20 ms frame as independent clients would. For capacity runs, where the generator must
 * hold hundreds of members on one core (a decoding VoiceClient costs ~40 us per frame); the
 * capacity benchmark's swarm and the engine's `lean` step both use it.
 */
export interface LeanPlaneOptions {
  readonly opus: OpusFactory;
  /** Send instants per 20 ms frame (1..20, default 10); 1 sends every packet at once. */
  readonly phases?: number;
  /** Where to send UDP when not to the binding's own address (127.0.0.1 otherwise). */
  readonly host?: string;
}

export class LeanMember {
  /** Datagrams received (every type: AUDIO, STREAM, acks). */
  received = 0;
  /**
   * Of those, AUDIO packets whose timestamp this member had already received (among its last 16):
   * a frame sent twice (as a forwarded packet and in a mix, say) is delivered once.
   */
  duplicates = 0;
  seq = 0;
  readonly #recent = new Uint32Array(16);
  #recentCount = 0;
  readonly cipher: VoiceCipher;
  constructor(
    readonly binding: VoiceBinding,
    readonly sock: Socket,
    readonly speaker: boolean,
    aead?: AeadBackend,
  ) {
    this.cipher = new VoiceCipher(binding.key, VoiceDirection.CLIENT_TO_SERVER, aead);
  }

  /** A datagram arrived: counted, nothing decrypted (the header is clear text, protocol README 9). */
  take(msg: Buffer): void {
    this.received++;
    if (msg.length < 16 || msg[2] !== VoicePacketType.AUDIO) return;
    const ts = msg.readUInt32BE(12);
    const n = Math.min(this.#recentCount, 16);
    for (let i = 0; i < n; i++) {
      if (this.#recent[i] === ts) {
        this.duplicates++;
        return;
      }
    }
    this.#recent[this.#recentCount++ & 15] = ts;
  }
}

export class LeanPlane {
  readonly frames: readonly Uint8Array[];
  private readonly phases: number;
  private readonly byPhase: LeanMember[][];
  private readonly members = new Set<LeanMember>();
  private speakers = 0;
  private readonly out = Buffer.alloc(MAX_PACKET_BYTES);
  // The generator must cost little per packet: persistent AES-GCM contexts when the addon is built.
  private readonly aead = loadNativeAead() ?? undefined;
  private readonly header = {
    type: VoicePacketType.AUDIO as VoicePacketType,
    flags: 0,
    voiceId: 0,
    sequence: 0,
    timestamp: 0,
  };
  private ticker: Ticker | null = null;
  private hb: NodeJS.Timeout | null = null;
  private step = 0;
  /** Frames sent per speaker since start() (20 ms each). */
  frame = 0;
  sent = 0;

  constructor(private readonly o: LeanPlaneOptions) {
    this.phases = Math.max(1, Math.min(20, Math.round(o.phases ?? 10)));
    this.byPhase = Array.from({ length: this.phases }, () => []);
    this.frames = encodeToneFrames(o.opus);
  }

  /** Opens the member's UDP socket, sends its HELLO; a speaker talks from the next tick on. */
  async add(binding: VoiceBinding, speaker: boolean): Promise<LeanMember> {
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const m = new LeanMember(binding, sock, speaker, this.aead);
    sock.on('message', (msg) => m.take(msg));
    this.members.add(m);
    if (speaker) {
      // Speaker i sends at phase (7i mod phases): a channel's speakers and neighbours differ.
      this.byPhase[(this.speakers * 7) % this.phases]!.push(m);
      this.speakers++;
    }
    this.send(m, VoicePacketType.HELLO, encodeTimeBody(performance.now()));
    return m;
  }

  remove(m: LeanMember): void {
    if (!this.members.delete(m)) return;
    for (const list of this.byPhase) {
      const i = list.indexOf(m);
      if (i >= 0) list.splice(i, 1);
    }
    m.sock.close();
    // With nobody left, nothing should keep ticking (or keep the process alive).
    if (this.members.size === 0) this.stop();
  }

  get size(): number {
    return this.members.size;
  }

  private send(m: LeanMember, type: VoicePacketType, payload: Uint8Array, flags = 0, ts = 0): void {
    const h = this.header;
    h.type = type;
    h.flags = flags;
    h.voiceId = m.binding.voiceId;
    h.sequence = m.seq++;
    h.timestamp = ts;
    const n = m.cipher.seal(h, payload, this.out);
    // dgram reads the buffer after an async step: each packet needs its own bytes.
    m.sock.send(Buffer.from(this.out.subarray(0, n)), m.binding.udpPort, this.o.host ?? '127.0.0.1');
    this.sent++;
  }

  /** Starts the speakers' clock and the heartbeats (every 5 s). Idempotent. */
  start(): void {
    if (this.ticker) return;
    this.ticker = new Ticker({
      periodMs: 20 / this.phases,
      // Send on time to the sub-millisecond, or the server's figures measure our timer, not itself.
      wake: 'timerfd',
      onTick: () => {
        const f = Math.floor(this.step / this.phases);
        const p = this.frames[f % 50]!;
        for (const m of this.byPhase[this.step % this.phases]!)
          this.send(m, VoicePacketType.AUDIO, p, f === 0 ? VoiceFlags.MARKER : 0, f * 960);
        this.step++;
        if (this.step % this.phases === 0) this.frame++;
      },
    }).start();
    this.hb = setInterval(() => {
      for (const m of this.members)
        this.send(m, VoicePacketType.HEARTBEAT, encodeTimeBody(performance.now()));
    }, 5_000);
  }

  /** Stops sending and closes every member's socket. Idempotent. */
  close(): void {
    this.ticker?.close();
    this.ticker = null;
    if (this.hb) clearInterval(this.hb);
    this.hb = null;
    for (const m of [...this.members]) this.remove(m);
  }

  /** Stops sending; members stay open (and keep counting) until close(). */
  stop(): void {
    this.ticker?.close();
    this.ticker = null;
    if (this.hb) clearInterval(this.hb);
    this.hb = null;
  }
}
