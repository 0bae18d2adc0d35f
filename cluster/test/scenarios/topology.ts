import { launchCluster } from '../../../deploy/cluster/launcher.js';
import { freePort, freeUdpPort, startTestServer } from '../../../test-support/server.js';

/**
 * Where the voice scenarios run: one server, or a cluster of server processes over one Redis. A
 * scenario sees only what a client sees (signaling URLs, its bindings, the audio it plays, events)
 * and each process's /metrics; so one scenario list runs unchanged on every topology.
 */
export interface Topology {
  readonly name: string;
  /** Server processes. */
  readonly nodeCount: number;
  /**
   * Signaling entry point (HTTP base URL) of a scenario's i-th client. Clients alternate over the
   * processes, so in a cluster members are signaled on processes other than their channel's owner.
   */
  url(i: number): string;
  /** HTTP base URL of process `n`. */
  nodeUrl(n: number): string;
  /** WebSocket URL of process `n` (what a `voice.redirect` names). */
  nodeWsUrl(n: number): string;
  /** UDP voice port of process `n`. */
  nodeUdpPort(n: number): number;
  /** The process whose UDP port a binding names (the channel's owner). Throws for a port of none. */
  nodeOfUdpPort(port: number): number;
  /**
   * The values of a metric's samples on every process's /metrics whose labels include `labels`
   * (none yet: empty). Throws when no process knows the metric at all, so a misspelt name cannot
   * read as nothing.
   */
  samples(name: string, labels?: Readonly<Record<string, string>>): Promise<number[]>;
  /** The sum of `samples(name, labels)`. */
  metric(name: string, labels?: Readonly<Record<string, string>>): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Server settings every topology shares: one server serves a whole scenario list to clients all on
 * 127.0.0.1, so the per-address budgets (log-ins, new users, channel creations) would count them as
 * one host's.
 */
const SHARED_CONFIG = {
  limits: {
    loginsPerMinute: 10_000,
    loginBurst: 1_000,
    newUserBurstPerAddress: 100_000,
    channelCreateBurstPerAddress: 100_000,
  },
};

interface Node {
  url: string;
  udpPort: number;
}

function topologyOf(name: string, nodes: readonly Node[], stop: () => Promise<void>): Topology {
  const node = (n: number): Node => {
    const x = nodes[n];
    if (!x) throw new TypeError(`no process ${n} in ${name} (${nodes.length} processes)`);
    return x;
  };
  return {
    name,
    nodeCount: nodes.length,
    url: (i) => node(i % nodes.length).url,
    nodeUrl: (n) => node(n).url,
    nodeWsUrl: (n) => `${node(n).url.replace(/^http/, 'ws')}/ws`,
    nodeUdpPort: (n) => node(n).udpPort,
    nodeOfUdpPort(port) {
      const n = nodes.findIndex((x) => x.udpPort === port);
      if (n < 0) throw new Error(`UDP port ${port} belongs to no process of ${name}`);
      return n;
    },
    async samples(metric, labels = {}) {
      const out: number[] = [];
      let known = false;
      for (const x of nodes) {
        const text = await (await fetch(`${x.url}/metrics`)).text();
        known ||= text.includes(`# TYPE ${metric} `);
        out.push(...matchingSamples(text, metric, labels));
      }
      if (!known) throw new Error(`no process of ${name} exposes the metric ${metric}`);
      return out;
    },
    async metric(metric, labels = {}) {
      return (await this.samples(metric, labels)).reduce((a, b) => a + b, 0);
    },
    stop,
  };
}

/** The values of the samples of `name` in Prometheus text whose labels include every one of `labels`. */
export function matchingSamples(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>>,
): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) out.push(Number(m[3]));
  }
  return out;
}

/** One server in this process (the home-server shape). */
export async function singleTopology(): Promise<Topology> {
  const srv = await startTestServer(SHARED_CONFIG);
  return topologyOf('single', [{ url: srv.url, udpPort: srv.udpPort }], () => srv.stop());
}

/** `nodes` server processes and a redis-server from the launcher `npm run cluster` uses. */
export async function clusterTopology(nodes = 2): Promise<Topology> {
  const cluster = await launchCluster({
    nodes,
    redisPort: await freePort(),
    portsFor: async () => ({ http: await freePort(), udp: await freeUdpPort() }),
    config: SHARED_CONFIG,
    logLevel: 'warn',
  });
  return topologyOf(`cluster-${nodes}`, cluster.nodes, () => cluster.stop());
}
