import { readFileSync } from 'node:fs';

/**
 * The kernel's own UDP error counters (Linux `/proc/net/snmp`, the `Udp:` lines). A datagram the
 * kernel drops at a full device queue is reported to a UDP socket without IP_RECVERR as sent, so
 * the server's own `voice_send_errors_total` cannot see it; only `SndbufErrors` does. Likewise a
 * full receive buffer drops datagrams before the server reads them (`RcvbufErrors`, also counted in
 * `InErrors`). These counters belong to the network namespace (every socket of the host, not only
 * this server's), so they are exported as what they are: host-wide drops since the server started.
 */
export interface KernelUdpErrors {
  inErrors: number;
  rcvbufErrors: number;
  sndbufErrors: number;
}

/** A `/proc/net/snmp` text that has no readable `Udp:` header and value lines. */
export class SnmpFormatError extends Error {
  override readonly name = 'SnmpFormatError';
}

const FIELDS = { inErrors: 'InErrors', rcvbufErrors: 'RcvbufErrors', sndbufErrors: 'SndbufErrors' } as const;

/**
 * The UDP error counters of a `/proc/net/snmp` text: the first `Udp:` line names the fields, the
 * second holds their values (`UdpLite:` lines are another protocol). Throws SnmpFormatError when
 * they are missing or not numbers.
 */
export function parseUdpSnmp(text: string): KernelUdpErrors {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'));
  if (lines.length < 2) throw new SnmpFormatError('no Udp header and value lines');
  const names = lines[0]!.trim().split(/\s+/).slice(1);
  const values = lines[1]!.trim().split(/\s+/).slice(1);
  const read = (field: string): number => {
    const i = names.indexOf(field);
    const v = i < 0 ? Number.NaN : Number(values[i]);
    if (!Number.isSafeInteger(v) || v < 0) throw new SnmpFormatError(`Udp ${field} missing or not a count`);
    return v;
  };
  return {
    inErrors: read(FIELDS.inErrors),
    rcvbufErrors: read(FIELDS.rcvbufErrors),
    sndbufErrors: read(FIELDS.sndbufErrors),
  };
}

/**
 * Reads the counters on demand (at a metrics scrape, never per packet) and reports how far each
 * moved since this reader was made. `open()` returns null where there is no `/proc/net/snmp` to
 * read (not Linux, or a sandbox without /proc): the metrics are then absent, not zero.
 */
export class KernelUdpCounters {
  private constructor(
    private readonly read: () => string,
    private readonly base: KernelUdpErrors,
  ) {}

  static open(path = '/proc/net/snmp', read = () => readFileSync(path, 'utf8')): KernelUdpCounters | null {
    if (process.platform !== 'linux' && path === '/proc/net/snmp') return null;
    try {
      return new KernelUdpCounters(read, parseUdpSnmp(read()));
    } catch {
      return null;
    }
  }

  /** Each counter's rise since `open()`; null when the file cannot be read or parsed now. */
  sinceStart(): KernelUdpErrors | null {
    let now: KernelUdpErrors;
    try {
      now = parseUdpSnmp(this.read());
    } catch {
      return null;
    }
    // Never below zero (counters that were reset read as a restart, as Prometheus takes them).
    const d = (k: keyof KernelUdpErrors) => Math.max(0, now[k] - this.base[k]);
    return { inErrors: d('inErrors'), rcvbufErrors: d('rcvbufErrors'), sndbufErrors: d('sndbufErrors') };
  }
}
