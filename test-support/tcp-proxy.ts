import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy the test controls, to cut one process off from a server (Redis) while others keep
 * their connections: `cut()` drops every connection and refuses new ones until `restore()`.
 */
export class TcpProxy {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly sockets: Set<Socket>,
    private readonly state: { cut: boolean },
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const sockets = new Set<Socket>();
    const state = { cut: false };
    const server = createServer((client) => {
      if (state.cut) return void client.destroy();
      const upstream = createConnection({ port: targetPort, host: targetHost });
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address();
    return new TcpProxy(server, typeof addr === 'object' && addr ? addr.port : 0, sockets, state);
  }

  cut(): void {
    this.state.cut = true;
    for (const s of this.sockets) s.destroy();
  }
  restore(): void {
    this.state.cut = false;
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
