import * as Neutralino from '@neutralinojs/lib';
import {
  COMMAND_EVENT,
  DESKTOP_PROTOCOL,
  EVENT_EVENT,
  EXTENSION_ID,
  parseEvent,
  type Command,
  type DesktopEvent,
  type ErrorInfo,
} from '../../src/desktop/messages.ts';

/** Distributive Omit: each command without its id. */
export type CommandInput = Command extends infer C ? (C extends Command ? Omit<C, 'id'> : never) : never;

export interface Reply {
  ok: boolean;
  error?: ErrorInfo;
  data?: unknown;
}

type Send = (msg: Command) => void;

/**
 * The UI's side of the message set. In the Neutralino window commands go out with
 * extensions.dispatch and events come back as window events; in a plain browser (development, tests)
 * over the extension's token-guarded WebSocket given in the page's query string.
 */
export class ExtensionLink {
  private seq = 0;
  private readonly pending = new Map<number, (r: Reply) => void>();
  private send: Send = () => undefined;
  private readonly listeners = new Set<(e: DesktopEvent) => void>();
  linkUp = false;
  onLinkChange: ((up: boolean) => void) | null = null;

  start(): void {
    const w = window as unknown as { NL_PORT?: unknown };
    if (w.NL_PORT !== undefined) this.startNeutralino();
    else this.startSocket();
  }

  on(fn: (e: DesktopEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Sends a command; resolves with its reply (or a LINK_DOWN failure after 15 s). */
  request(cmd: CommandInput): Promise<Reply> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        resolve({ ok: false, error: { code: 'LINK_DOWN', message: 'The audio engine does not answer.' } });
      }, 15_000);
      this.pending.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
      this.send({ ...cmd, id } as Command);
    });
  }

  private deliver(raw: unknown): void {
    const p = parseEvent(raw);
    if (!p.ok) return;
    const e = p.value;
    if (e.ev === 'reply') {
      const done = this.pending.get(e.re);
      this.pending.delete(e.re);
      done?.({
        ok: e.ok,
        ...(e.error ? { error: e.error } : {}),
        ...(e.data !== undefined ? { data: e.data } : {}),
      });
      return;
    }
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (err) {
        console.error(err);
      }
    }
  }

  private setUp(up: boolean): void {
    this.linkUp = up;
    this.onLinkChange?.(up);
  }

  private startNeutralino(): void {
    Neutralino.init();
    void Neutralino.events.on(EVENT_EVENT, (ev: CustomEvent) => this.deliver(ev.detail));
    // The runtime would abort on app.exit (v6.9.0): close the window ourselves and let the extension
    // see its socket drop.
    void Neutralino.events.on('windowClose', () => {
      void this.request({ cmd: 'disconnect' }).finally(() => void Neutralino.app.exit());
    });
    this.send = (msg) => void Neutralino.extensions.dispatch(EXTENSION_ID, COMMAND_EVENT, msg);
    this.setUp(true);
    void this.request({ cmd: 'hello', protocol: DESKTOP_PROTOCOL });
  }

  private startSocket(): void {
    const q = new URLSearchParams(location.search);
    const ext = q.get('ext');
    const token = q.get('token');
    if (!ext || !token) {
      this.setUp(false);
      return;
    }
    let delay = 250;
    const open = (): void => {
      const ws = new WebSocket(`${ext}?token=${encodeURIComponent(token)}`);
      const queue: string[] = [];
      this.send = (msg) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
        else if (queue.length < 64) queue.push(JSON.stringify(msg));
      };
      ws.onopen = () => {
        delay = 250;
        for (const m of queue.splice(0)) ws.send(m);
        this.setUp(true);
        void this.request({ cmd: 'hello', protocol: DESKTOP_PROTOCOL });
      };
      ws.onmessage = (m) => {
        try {
          this.deliver(JSON.parse(String(m.data)));
        } catch {
          // not JSON: ignore
        }
      };
      ws.onclose = () => {
        this.setUp(false);
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 4000);
      };
    };
    open();
  }
}
