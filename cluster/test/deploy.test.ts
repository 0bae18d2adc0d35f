import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { loadAll } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { freePort } from '../../test-support/server.js';

/*
 * The deployment files say what they must: parsed and checked on the fields that matter (UDP
 * exposure, the address a node announces, drain on SIGTERM, Redis durability and authentication).
 * The Redis configuration is loaded by a real redis-server.
 */

const DEPLOY = resolve(import.meta.dirname, '../../deploy');
const read = (p: string): string => readFileSync(join(DEPLOY, p), 'utf8');

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => {
  expect(typeof v === 'object' && v !== null).toBe(true);
  return v as Obj;
};

describe('deploy/', () => {
  it('docker-compose: each node publishes its own UDP port unchanged, announces it, and drains on SIGTERM', () => {
    const [doc] = loadAll(read('multi-node/docker-compose.yml')) as Obj[];
    const services = obj(doc!.services);
    const nodes = Object.entries(services).filter(([name]) => name.startsWith('node-'));
    expect(nodes.length).toBeGreaterThanOrEqual(2);
    const ids = new Set<string>();
    const udp = new Set<string>();
    for (const [name, raw] of nodes) {
      const s = obj(raw);
      const env = obj(s.environment);
      expect(env.VOICE_NODE_ID, name).toBe(name);
      ids.add(String(env.VOICE_NODE_ID));
      expect(String(env.VOICE_REDIS_URL)).toMatch(/^redis:\/\/voice:\$\{REDIS_PASSWORD\}@redis:6379$/);
      expect(env.VOICE_PUBLIC_HOST).toBe('${PUBLIC_HOST}');
      expect(s.stop_signal).toBe('SIGTERM');
      const ports = s.ports as string[];
      // Clients are told VOICE_UDP_PORT: the published host port must be that same port.
      expect(ports).toContain(`${String(env.VOICE_UDP_PORT)}:${String(env.VOICE_UDP_PORT)}/udp`);
      expect(ports).toContain(`${String(env.VOICE_PORT)}:${String(env.VOICE_PORT)}/tcp`);
      udp.add(String(env.VOICE_UDP_PORT));
    }
    expect(ids.size).toBe(nodes.length);
    expect(udp.size).toBe(nodes.length);
    expect(obj(services.redis).command).toEqual(['redis-server', '/usr/local/etc/redis/redis.conf']);
  });

  it('Kubernetes: host networking, UDP port and public address per machine, readiness on /readyz', () => {
    const docs = loadAll(read('multi-node/k8s/voice.yaml')) as Obj[];
    const sts = docs.find((d) => d.kind === 'StatefulSet')!;
    const pod = obj(obj(obj(sts.spec).template).spec);
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    const [c] = pod.containers as Obj[];
    const ports = c!.ports as Obj[];
    expect(ports).toContainEqual({ name: 'voice', containerPort: 7801, protocol: 'UDP' });
    const env: Record<string, Obj> = Object.fromEntries((c!.env as Obj[]).map((e) => [String(e.name), e]));
    expect(obj(env.VOICE_UDP_PORT).value).toBe('7801');
    expect(obj(obj(obj(env.VOICE_PUBLIC_HOST).valueFrom).fieldRef).fieldPath).toBe('status.hostIP');
    expect(obj(obj(obj(env.VOICE_NODE_ID).valueFrom).fieldRef).fieldPath).toBe('metadata.name');
    expect(obj(obj(c!.readinessProbe).httpGet).path).toBe('/readyz');
    // Voice never goes through a Service: the only Service is TCP signaling.
    const services = docs.filter((d) => d.kind === 'Service');
    for (const s of services) for (const p of obj(s.spec).ports as Obj[]) expect(p.protocol).toBe('TCP');
    const redis = loadAll(read('multi-node/k8s/redis.yaml')) as Obj[];
    expect(redis.map((d) => d.kind).sort()).toEqual(['Service', 'StatefulSet']);
  });

  it('systemd: one unit per node instance, drains on SIGTERM, no restart loop on a config error', () => {
    const unit = read('multi-node/voice-server@.service');
    expect(unit).toMatch(/^ExecStart=.*main\.js --config \/etc\/voice\/node-%i\.json$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=2$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
  });

  it('the example node configuration is valid and names Redis', () => {
    const config = loadConfig({ env: {}, file: join(DEPLOY, 'multi-node/node-1.json') });
    expect(config.redisUrl).toMatch(/^redis:\/\/voice:/);
    expect(config.nodeId).toBe('node-1');
    expect(config.publicHost).toBe('voice.example.org');
  });

  it('redis.conf loads in redis-server: AOF on, default user off, the voice user limited to voice:*', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'voice-redis-conf-'));
    const port = await freePort();
    const child = spawn(
      'redis-server',
      [join(DEPLOY, 'redis/redis.conf'), '--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
      { stdio: 'ignore' },
    );
    const clients: Redis[] = [];
    const client = (opts: { username?: string; password?: string }) => {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, ...opts });
      c.on('error', () => {});
      clients.push(c);
      return c;
    };
    try {
      const admin = client({ username: 'admin', password: 'REPLACE-ME-admin-password' });
      for (let i = 0; ; i++) {
        try {
          await admin.connect();
          break;
        } catch (err) {
          if (i > 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(await admin.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await admin.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      const anon = client({});
      await anon.connect().catch(() => {});
      await expect(anon.ping()).rejects.toThrow(/NOAUTH|WRONGPASS|closed|NOPERM/);
      const voice = client({ username: 'voice', password: 'REPLACE-ME-voice-password' });
      await voice.connect();
      expect(await voice.set('voice:x', '1')).toBe('OK');
      await expect(voice.set('other:x', '1')).rejects.toThrow(/NOPERM/);
      expect(await voice.publish('voice:bus', 'x')).toBe(0);
    } finally {
      for (const c of clients) c.disconnect();
      child.kill('SIGKILL');
      await once(child, 'exit');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
