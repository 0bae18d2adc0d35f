import type { VoiceMember } from './member.js';

/**
 * The rule of protocol README 8.8, judged at each tick before the playouts pop: which listeners take
 * the speakers they hear as STREAM packets (forwarded on arrival, no mix) and which need the mix, and
 * which speakers some mix needs (only they are decoded; the timing advance is only for them).
 *
 * A listener streams while it was granted 2 or more streams, is not deafened, has a transport, hears
 * at most its grant of senders, and set no volume other than 100 for any of them. `senders` are the
 * members whose audio plays now or is buffered (`VoiceMember.sending`), `count` of them.
 * Sets `streamMode` on every member and `inMix` on every sender; allocates nothing. Returns whether
 * any listener needs a mix this tick.
 */
export function routeStreams(
  members: readonly VoiceMember[],
  senders: readonly VoiceMember[],
  count: number,
): boolean {
  for (let s = 0; s < count; s++) senders[s]!.inMix = false;
  let needMix = false;
  for (let i = 0; i < members.length; i++) {
    const l = members[i]!;
    const live = !l.deaf && l.endpoint.transport !== 'none';
    let heard = 0;
    let custom = false;
    for (let s = 0; s < count; s++) {
      const sp = senders[s]!;
      if (sp.userId === l.userId) continue; // itself, or its other binding during a handover
      heard++;
      if ((l.gains?.get(sp.userId) ?? 1) !== 1) custom = true;
    }
    l.streamMode = live && l.streams >= 2 && heard <= l.streams && !custom;
    if (!live || l.streamMode) continue;
    // A mixed listener: every sender it hears (not at volume 0) goes into its mix.
    for (let s = 0; s < count; s++) {
      const sp = senders[s]!;
      if (sp.userId === l.userId || (l.gains?.get(sp.userId) ?? 1) === 0) continue;
      sp.inMix = true;
      needMix = true;
    }
  }
  return needMix;
}

/**
 * The routing of tick `tick`, before its playouts pop: the senders are the heard members whose
 * audio is buffered or played in the previous tick (a concealed tail included), at most `most` of
 * them, gathered into `senders` (reused, not allocated). Returns whether any listener needs a mix.
 */
export function routeTick(
  members: readonly VoiceMember[],
  senders: VoiceMember[],
  tick: number,
  most: number,
): boolean {
  let n = 0;
  for (let i = 0; i < members.length && n < most; i++) {
    const m = members[i]!;
    m.sending = m.heard && (m.jitter.depth > 0 || m.pcmTick === tick - 1);
    if (m.sending) senders[n++] = m;
  }
  return routeStreams(members, senders, n);
}
