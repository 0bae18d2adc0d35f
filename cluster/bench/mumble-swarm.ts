/**
 * The same load as loadtest/src/swarm.ts, against a Mumble 1.3 server (murmurd), for the
 * side-by-side benchmark (cluster/bench/mumble.ts): channels of `members`, `speakers` of them
 * sending the load generator's own pre-encoded 32 kbit/s Opus frames at 20 ms over UDP
 * (OCB2-AES128, as Mumble clients do), at 10 phases spread over the frame; everyone counts the
 * voice packets that arrive.
 *
 *   node --conditions=source --import tsx cluster/bench/mumble-swarm.ts --port 64738 \
 *     --channels 10 --members 10 --speakers 2 --seconds 10
 */
import { createSocket, type Socket } from 'node:dgram';
import { connect, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { createOpus } from '@voice/media';
import { encodeToneFrames } from '../../loadtest/src/voice/tone-frames.js';
import { frame, MumbleEncrypter, MumbleMsg, mumbleVarint, pbDecode, pbEncode } from './mumble-protocol.js';

interface Member {
  tls: TLSSocket;
  udp: Socket;
  session: number;
  crypt: MumbleEncrypter;
  speaker: boolean;
  /** Voice packets received (UDP ping replies are not counted). */
  received: number;
  seq: number;
}

export interface MumbleSwarmResult {
  members: number;
  packetsSent: number;
  packetsReceived: number;
  /** Voice received / expected: a listener expects each speaker's packet but its own. */
  deliveryRatio: number;
  setupMs: number;
}

/** One control connection: frames in, handlers by message type. */
class Control {
  #buf = Buffer.alloc(0);
  readonly #waiters: {
    type: number;
    test: (m: Map<number, number | Buffer>) => boolean;
    done: (m: Map<number, number | Buffer>) => void;
  }[] = [];
  /** Channel ids by name, from every ChannelState seen. */
  readonly channels = new Map<string, number>();

  constructor(readonly tls: TLSSocket) {
    tls.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      while (this.#buf.length >= 6) {
        const type = this.#buf.readUInt16BE(0);
        const len = this.#buf.readUInt32BE(2);
        if (this.#buf.length < 6 + len) break;
        const body = this.#buf.subarray(6, 6 + len);
        this.#buf = this.#buf.subarray(6 + len);
        this.#on(type, body);
      }
    });
  }

  #on(type: number, body: Buffer): void {
    if (type === MumbleMsg.UDPTunnel) return;
    const m = pbDecode(body);
    if (type === MumbleMsg.ChannelState) {
      const name = m.get(3);
      const id = m.get(1);
      if (Buffer.isBuffer(name) && typeof id === 'number') this.channels.set(name.toString('utf8'), id);
    }
    if (type === MumbleMsg.Reject || type === MumbleMsg.PermissionDenied)
      throw new Error(`mumble refused (${type}): ${JSON.stringify([...m].map(([k, v]) => [k, String(v)]))}`);
    for (let i = 0; i < this.#waiters.length; i++) {
      const w = this.#waiters[i]!;
      if (w.type === type && w.test(m)) {
        this.#waiters.splice(i, 1);
        w.done(m);
        return;
      }
    }
  }

  send(type: number, fields: Parameters<typeof pbEncode>[0]): void {
    this.tls.write(frame(type, pbEncode(fields)));
  }

  wait(type: number, test: (m: Map<number, number | Buffer>) => boolean = () => true, ms = 10_000) {
    return new Promise<Map<number, number | Buffer>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no mumble message ${type} in ${ms} ms`)), ms);
      this.#waiters.push({
        type,
        test,
        done: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  }
}

/** The longest UDP ping reply: OCB2 header (4), type byte, a varint timestamp under 2^28 (4). */
const MAX_PING_REPLY_BYTES = 4 + 1 + 4;

async function join(
  port: number,
  name: string,
  password?: string,
): Promise<{ ctl: Control; member: Member }> {
  const tls = await new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
  });
  tls.setNoDelay(true);
  const ctl = new Control(tls);
  const crypt = ctl.wait(MumbleMsg.CryptSetup);
  const sync = ctl.wait(MumbleMsg.ServerSync);
  ctl.send(MumbleMsg.Version, [
    [1, (1 << 16) | (3 << 8) | 4],
    [2, 'voice-bench'],
    [3, 'Linux'],
  ]);
  ctl.send(MumbleMsg.Authenticate, [
    [1, name],
    ...(password ? ([[2, password]] as [number, string][]) : []),
    [5, true],
  ]);
  const c = await crypt;
  const s = await sync;
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const member: Member = {
    tls,
    udp,
    session: s.get(1) as number,
    crypt: new MumbleEncrypter(c.get(1) as Buffer, c.get(2) as Buffer),
    speaker: false,
    received: 0,
    seq: 0,
  };
  // Only voice counts. The plaintext of a UDP ping reply is its header byte and the varint
  // timestamp we sent (under 2^28: 4 bytes), so the datagram is at most 4 + 5 bytes; a voice
  // packet carries one of our Opus frames (checked longer than that at start-up) after its header.
  udp.on('message', (d: Buffer) => {
    if (d.length > MAX_PING_REPLY_BYTES) member.received++;
  });
  return { ctl, member };
}

export async function runMumbleSwarm(o: {
  port: number;
  channels: number;
  members: number;
  speakers: number;
  seconds: number;
  /** SuperUser's password (murmurd -supw): it makes the channels; members may only enter them. */
  superUserPassword: string;
  log?: (line: string) => void;
}): Promise<MumbleSwarmResult> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const frames = encodeToneFrames(await createOpus());
  // A voice packet is told from a ping reply by its length (see join): every frame must be longer.
  if (frames.some((f) => f.length <= MAX_PING_REPLY_BYTES))
    throw new Error('an Opus frame is as short as a ping reply: voice could not be counted apart');
  const members: Member[] = [];
  const controls: Control[] = [];
  const plain = Buffer.alloc(1100);
  const packet = Buffer.alloc(1100);
  const sendUdp = (m: Member, length: number): void => {
    const n = m.crypt.seal(plain.subarray(0, length), packet);
    // dgram reads the buffer after this returns: each datagram needs its own copy.
    m.udp.send(Buffer.from(packet.subarray(0, n)), o.port, '127.0.0.1');
  };
  // A UDP ping (type 1): the server learns the member's UDP address and sends it voice over UDP.
  const ping = (m: Member): void => {
    plain[0] = 1 << 5;
    sendUdp(m, mumbleVarint(plain, 1, Math.floor(performance.now()) & 0xfffffff));
  };
  try {
    // SuperUser makes the channels (anonymous users may not): it stays connected, in the root.
    const admin = await join(o.port, 'SuperUser', o.superUserPassword);
    controls.push(admin.ctl);
    members.push(admin.member);
    for (let c = 0; c < o.channels; c++) {
      const channelName = `bench-${c}`;
      const made = admin.ctl.wait(
        MumbleMsg.ChannelState,
        (m) => (m.get(3) as Buffer | undefined)?.toString() === channelName,
      );
      admin.ctl.send(MumbleMsg.ChannelState, [
        [2, 0],
        [3, channelName],
      ]);
      const channelId = (await made).get(1) as number;
      for (let k = 0; k < o.members; k++) {
        const { ctl, member } = await join(o.port, `b${c}x${k}`);
        controls.push(ctl);
        const moved = ctl.wait(
          MumbleMsg.UserState,
          (m) => m.get(1) === member.session && m.get(5) === channelId,
        );
        ctl.send(MumbleMsg.UserState, [
          [1, member.session],
          [5, channelId],
        ]);
        await moved;
        member.speaker = k < o.speakers;
        ping(member);
        members.push(member);
      }
      log(`channel ${c + 1}/${o.channels} ready (${channelId})`);
    }
    const setupMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 300));
    for (const m of members) m.received = 0;
    const speakers = members.filter((m) => m.speaker);
    // Ten phases over the frame, as independent clients' clocks.
    const phases = 10;
    const byPhase: Member[][] = Array.from({ length: phases }, () => []);
    speakers.forEach((m, i) => byPhase[(i * 7) % phases]!.push(m));
    let sent = 0;
    let step = 0;
    let frameNo = 0;
    const start = performance.now();
    const end = start + o.seconds * 1000;
    const keepAlive = setInterval(() => {
      for (const ctl of controls) ctl.send(MumbleMsg.Ping, [[1, Date.now()]]);
      for (const m of members) ping(m);
    }, 5000);
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        if (now >= end) return resolve();
        const f = Math.floor(step / phases);
        const opusFrame = frames[f % frames.length]!;
        for (const m of byPhase[step % phases]!) {
          // Legacy voice packet: header (type 4 = Opus, target 0), sequence, Opus length, data.
          plain[0] = 4 << 5;
          let at = mumbleVarint(plain, 1, m.seq);
          m.seq += 2; // in 10 ms units, as Mumble counts
          at = mumbleVarint(plain, at, opusFrame.length);
          plain.set(opusFrame, at);
          sendUdp(m, at + opusFrame.length);
          sent++;
        }
        frameNo = f;
        step++;
        setTimeout(tick, Math.max(0, start + (step * 20) / phases - performance.now()));
      };
      tick();
    });
    clearInterval(keepAlive);
    log('done sending');
    await new Promise((r) => setTimeout(r, 300));
    const received = members.reduce((a, m) => (m === admin.member ? a : a + m.received), 0);
    // Each member hears every speaker of its channel but itself, one packet per frame each.
    const perChannelSpeakers = Math.min(o.speakers, o.members);
    const heardPerFrame = o.channels * (o.members * perChannelSpeakers - perChannelSpeakers);
    const expected = heardPerFrame * (frameNo + 1);
    return {
      members: members.length - 1,
      packetsSent: sent,
      packetsReceived: received,
      deliveryRatio: expected > 0 ? received / expected : 0,
      setupMs,
    };
  } finally {
    for (const m of members) {
      m.udp.close();
      m.tls.destroy();
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '64738' },
      channels: { type: 'string', default: '2' },
      members: { type: 'string', default: '10' },
      speakers: { type: 'string', default: '2' },
      seconds: { type: 'string', default: '10' },
      supw: { type: 'string', default: 'bench' },
    },
  });
  const result = await runMumbleSwarm({
    port: Number(values.port),
    channels: Number(values.channels),
    members: Number(values.members),
    speakers: Number(values.speakers),
    seconds: Number(values.seconds),
    superUserPassword: values.supw,
    log: (l) => process.stderr.write(l + '\n'),
  });
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
