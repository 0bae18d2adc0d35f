import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import { COMMAND_EVENT, EVENT_EVENT, type DesktopEvent } from './messages.js';

/** How the extension talks to its UI. close() is idempotent; `closed` resolves when the UI is gone. */
export interface UiLink {
  send(event: DesktopEvent): void;
  /** Raw command objects (validated by the controller). */
  onCommand: ((raw: unknown) => void) | null;
  readonly closed: Promise<void>;
  close(): void;
}

/** What the Neutralino runtime writes to the extension's stdin (v6.9.0). */
export const NeutralinoCredentialsSchema = z.object({
  nlPort: z.string().regex(/^\d{1,5}$/),
  nlToken: z.string().min(1).max(512),
  nlConnectToken: z.string().min(1).max(512),
  nlExtensionId: z.string().min(1).max(128),
});
export type NeutralinoCredentials = z.infer<typeof NeutralinoCredentialsSchema>;

/** Reads the one JSON object the runtime writes to stdin before closing it. */
export async function readCredentials(
  input: NodeJS.ReadableStream,
  timeoutMs = 5000,
): Promise<NeutralinoCredentials> {
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no Neutralino credentials on stdin')), timeoutMs);
    const tryParse = (): boolean => {
      try {
        JSON.parse(Buffer.concat(chunks).toString('utf8'));
        return true;
      } catch {
        return false;
      }
    };
    input.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 16_384) {
        clearTimeout(t);
        reject(new Error('credentials too long'));
        return;
      }
      chunks.push(c);
      // The runtime closes stdin after the object; some shells keep it open, so parse as it comes.
      if (tryParse()) {
        clearTimeout(t);
        resolve();
      }
    });
    input.on('end', () => {
      clearTimeout(t);
      resolve();
    });
    input.on('error', (e: Error) => {
      clearTimeout(t);
      reject(e);
    });
  });
  return NeutralinoCredentialsSchema.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
}

/**
 * The extension side of Neutralino's protocol: a WebSocket to the runtime; events to the app go out
 * as `app.broadcast` requests, commands come in as `{event, data}` from `extensions.dispatch`. Replies
 * to our requests and the runtime's own events (windowFocus, clientConnect, ...) are ignored. When
 * the app exits the socket drops, and `closed` resolves: the runtime does not kill extensions.
 */
export class NeutralinoLink implements UiLink {
  readonly closed: Promise<void>;
  /** Messages from the runtime that were not commands for us (ignored). */
  ignored = 0;
  /** Commands dropped because they came before a handler was set and the queue was full. */
  dropped = 0;
  private seq = 0;
  private handler: ((raw: unknown) => void) | null = null;
  // The runtime delivers dispatches it held for us right at connect, possibly in the same TCP
  // segment as the upgrade response: listen from the start and keep them until a handler is set.
  private readonly early: unknown[] = [];

  private constructor(
    private readonly ws: WebSocket,
    private readonly creds: NeutralinoCredentials,
  ) {
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('error', () => {
      // 'close' follows; nothing else to do.
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return void this.ignored++;
      let msg: unknown;
      try {
        msg = JSON.parse((data as Buffer).toString('utf8'));
      } catch {
        return void this.ignored++;
      }
      const m = msg as { event?: unknown; data?: unknown; id?: unknown };
      if (!m || typeof m !== 'object' || m.event !== COMMAND_EVENT || m.id !== undefined)
        return void this.ignored++;
      if (this.handler) this.handler(m.data);
      else if (this.early.length < 64) this.early.push(m.data);
      else this.dropped++;
    });
  }

  get onCommand(): ((raw: unknown) => void) | null {
    return this.handler;
  }

  set onCommand(fn: ((raw: unknown) => void) | null) {
    this.handler = fn;
    if (fn) for (const m of this.early.splice(0)) fn(m);
  }

  static async connect(creds: NeutralinoCredentials, host = '127.0.0.1'): Promise<NeutralinoLink> {
    const q = new URLSearchParams({ extensionId: creds.nlExtensionId, connectToken: creds.nlConnectToken });
    const ws = new WebSocket(`ws://${host}:${creds.nlPort}?${q.toString()}`);
    const link = new NeutralinoLink(ws, creds);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('close', () =>
        reject(new Error(`the Neutralino runtime refused the connection on port ${creds.nlPort}`)),
      );
    });
    return link;
  }

  send(event: DesktopEvent): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const req = {
      id: String(++this.seq),
      method: 'app.broadcast',
      accessToken: this.creds.nlToken,
      data: { event: EVENT_EVENT, data: event },
    };
    this.ws.send(JSON.stringify(req));
  }

  close(): void {
    this.ws.close();
  }
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};

/**
 * Development and tests: the same UI in a plain browser. Serves the built UI (when `staticDir` is
 * given) and a WebSocket at /ext that only accepts the random token printed at start. Several
 * pages may be connected (a reload opens a new one); events go to all of them.
 */
export class DevSocketLink implements UiLink {
  onCommand: ((raw: unknown) => void) | null = null;
  readonly closed: Promise<void>;
  readonly token: string;
  rejected = 0;
  private resolveClosed!: () => void;
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<WebSocket>();
  /** The last event of each kind, replayed to a page that connects (a reload sees the state at once). */
  private readonly latest = new Map<string, string>();

  private constructor(
    private readonly http: Server,
    readonly port: number,
    token: string,
  ) {
    this.token = token;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
    http.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const given = Buffer.from(url.searchParams.get('token') ?? '');
      const want = Buffer.from(this.token);
      if (url.pathname !== '/ext' || given.length !== want.length || !timingSafeEqual(given, want)) {
        this.rejected++;
        socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
    });
  }

  static async listen(
    options: { port?: number; staticDir?: string; token?: string } = {},
  ): Promise<DevSocketLink> {
    const token = options.token ?? randomBytes(16).toString('hex');
    const dir = options.staticDir === undefined ? undefined : resolve(options.staticDir);
    const http = createServer((req, res) => {
      if (!dir || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404).end();
        return;
      }
      let rel: string;
      try {
        const path = new URL(req.url ?? '/', 'http://localhost').pathname;
        rel = normalize(decodeURIComponent(path === '/' ? '/index.html' : path));
      } catch {
        res.writeHead(400).end(); // a malformed address or escape: never a crash
        return;
      }
      const file = join(dir, rel); // dir is absolute (resolved at listen)
      if (!file.startsWith(dir + sep) && file !== dir) {
        res.writeHead(403).end();
        return;
      }
      readFile(file).then(
        (body) =>
          res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream' }).end(body),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    const addr = http.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    return new DevSocketLink(http, port, token);
  }

  /** The page address with the extension's address and token in the query string. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/?ext=${encodeURIComponent(`ws://127.0.0.1:${this.port}/ext`)}&token=${this.token}`;
  }

  private accept(ws: WebSocket): void {
    if (this.clients.size >= 8) {
      ws.close(1013, 'too many pages');
      return;
    }
    this.clients.add(ws);
    for (const m of this.latest.values()) ws.send(m);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg: unknown;
      try {
        msg = JSON.parse((data as Buffer).toString('utf8'));
      } catch {
        msg = null;
      }
      this.onCommand?.(msg);
    });
    ws.on('close', () => this.clients.delete(ws));
    ws.on('error', () => ws.terminate());
  }

  send(event: DesktopEvent): void {
    const m = JSON.stringify(event);
    if (event.ev !== 'reply' && event.ev !== 'speaking' && event.ev !== 'level') this.latest.set(event.ev, m);
    for (const ws of this.clients) if (ws.readyState === WebSocket.OPEN) ws.send(m);
  }

  close(): void {
    for (const ws of this.clients) ws.terminate();
    this.wss.close();
    this.http.close();
    this.resolveClosed();
  }
}
