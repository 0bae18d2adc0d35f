/** The server's /metrics figures a load test follows (Prometheus text format, our metric names). */
export interface ServerFigures {
  members: number;
  channels: number;
  /** Worst channel's tick lateness p99 (due time to actor start), ms. */
  tickLatenessP99Ms: number;
  /** Worst channel's server-added delay p99 (packet arrival to mix sent), ms. */
  holdP99Ms: number;
  packetsIn: number;
  packetsOut: number;
  /** Incoming voice packets dropped (all reasons). */
  dropped: number;
  wsConnections: number;
  sessions: number;
  /** Lowest encoder complexity in use (channels lower it when over their CPU budget); null: no channel. */
  minComplexity: number | null;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/;

/** Parses the lines we need; unknown metrics are ignored, missing ones read as 0. */
export function parseServerMetrics(text: string): ServerFigures {
  const f: ServerFigures = {
    members: 0,
    channels: 0,
    tickLatenessP99Ms: 0,
    holdP99Ms: 0,
    packetsIn: 0,
    packetsOut: 0,
    dropped: 0,
    wsConnections: 0,
    sessions: 0,
    minComplexity: null,
  };
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    switch (m[1]) {
      case 'voice_channel_members':
        f.members += v;
        f.channels++;
        break;
      case 'voice_channel_tick_lateness_p99_ms':
        f.tickLatenessP99Ms = Math.max(f.tickLatenessP99Ms, v);
        break;
      case 'voice_channel_hold_p99_ms':
        f.holdP99Ms = Math.max(f.holdP99Ms, v);
        break;
      case 'voice_udp_packets_in_total':
        f.packetsIn += v;
        break;
      case 'voice_packets_out_total':
        f.packetsOut += v;
        break;
      case 'voice_packets_dropped_total':
        f.dropped += v;
        break;
      case 'voice_ws_connections':
        f.wsConnections += v;
        break;
      case 'voice_sessions':
        f.sessions += v;
        break;
      case 'voice_channel_complexity':
        f.minComplexity = f.minComplexity === null ? v : Math.min(f.minComplexity, v);
        break;
    }
  }
  return f;
}

/** Fetches and parses `${base}/metrics`; null when the server does not answer within 2 s. */
export async function scrapeServer(base: string): Promise<ServerFigures | null> {
  try {
    const res = await fetch(new URL('/metrics', base), { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return null;
    return parseServerMetrics(await res.text());
  } catch {
    return null;
  }
}
