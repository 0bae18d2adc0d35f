import type { VoiceMember } from './member.js';

/**
 * The members of one channel, and the one fact about them several parts need: whether a person is
 * here twice. A binding handed over (protocol README 8.4) keeps the old member until the new one
 * carries audio; both are the same person: neither hears the other, and the old one leaves once its
 * buffer has played out.
 */
export class ChannelRoster {
  readonly list: VoiceMember[] = [];
  /** Members whose user has another member here too (0 outside a handover: nothing to look up). */
  twins = 0;

  add(m: VoiceMember): void {
    if (this.sibling(m.userId, null)) this.twins++;
    this.list.push(m);
  }

  /** Removes `m`; returns the member of the same user that stays, if any. */
  remove(m: VoiceMember): VoiceMember | null {
    const i = this.list.indexOf(m);
    if (i >= 0) this.list.splice(i, 1);
    const twin = this.sibling(m.userId, m);
    if (twin) this.twins--;
    return twin;
  }

  /** Another member of `userId` than `not`, or null. */
  sibling(userId: string, not: VoiceMember | null): VoiceMember | null {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const o = list[i]!;
      if (o !== not && o.userId === userId) return o;
    }
    return null;
  }

  /** `m`'s other binding, during a handover only (no scan otherwise). */
  twinOf(m: VoiceMember): VoiceMember | null {
    return this.twins > 0 ? this.sibling(m.userId, m) : null;
  }
}
