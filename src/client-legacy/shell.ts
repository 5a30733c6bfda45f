import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { HolePunchError } from '../errors.js';
import type { Endpoint } from '../protocol/endpoint.js';
import { type LegacyClientConfig, type LegacyClientEvent, LegacyClientState } from './state.js';

export interface LegacyClientOptions extends LegacyClientConfig {
  /**
   * Local port of the server socket. The original binds the server's port number (4000 by
   * default), which is the default here too; 0 lets the OS choose (two clients on one host).
   */
  readonly localPort?: number;
  /** The address to bind (default all). */
  readonly bindAddress?: string;
}

export interface LegacyPunchResult {
  readonly event: Extract<LegacyClientEvent, { event: 'punched' }>;
  /** The peer socket, still open and bound to `event.localPort`: the game's socket. */
  readonly socket: Socket;
}

/**
 * The original plugin's client on `node:dgram` and timers. Emits `event` with every
 * `LegacyClientEvent`; `punched()` resolves with the open peer socket or rejects with a
 * `HolePunchError` (`session_closed`, `punch_failed`, `aborted`).
 */
export class LegacyClient extends EventEmitter {
  private readonly state: LegacyClientState;
  private readonly options: LegacyClientOptions;
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly clock0 = performance.now();
  private closed = false;
  private readonly result: Promise<LegacyPunchResult>;
  private settle: { resolve(r: LegacyPunchResult): void; reject(e: Error): void } | undefined;

  constructor(options: LegacyClientOptions) {
    super();
    this.options = options;
    this.state = new LegacyClientState(options);
    this.result = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // A caller that only listens to events must not get an unhandled rejection.
    this.result.catch(() => {});
  }

  private now(): number {
    return performance.now() - this.clock0;
  }

  async start(): Promise<void> {
    this.socket = await this.bind(this.options.localPort ?? this.options.server.port, 'server');
    this.state.start(this.now());
    this.flush();
  }

  punched(): Promise<LegacyPunchResult> {
    return this.result;
  }

  /** `finalize_peers()`: `ep:KEY` (see LegacyClientState.finalizePeers). */
  finalizePeers(): void {
    this.state.finalizePeers();
    this.flush();
  }

  /** `checkout()`: `cc:NAME`, the master revisions' only way to leave. */
  checkout(): void {
    this.state.checkout();
    this.flush();
  }

  /** Lobby revision: `client_disconnect()` (`cc`, then failed/aborted). */
  clientDisconnect(): void {
    this.state.clientDisconnect();
    this.flush();
  }

  /** Lobby revision: `close_session()` (`cs` from the host, then failed/aborted). */
  closeSession(): void {
    this.state.closeSession();
    this.flush();
  }

  /** Stops the handshake; the peer socket is closed unless it was handed out by `punched()`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (!this.state.finished) {
      this.socket?.close();
      this.settle?.reject(new HolePunchError('aborted', 'legacy client closed'));
    }
  }

  /** Binds and awaits the bind: for the first socket, whose bind error the caller must see. */
  private bind(port: number, role: 'server' | 'peer'): Promise<Socket> {
    const socket = this.open(port, role);
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.once('listening', () => {
        socket.off('error', reject);
        resolve(socket);
      });
    });
  }

  /**
   * A socket that is binding: node:dgram queues sends until the bind completes, so the
   * state's sends that follow a switch or listen go out from the new socket, in order.
   */
  private open(port: number, role: 'server' | 'peer'): Socket {
    const socket = createSocket({ type: 'udp4' });
    let bound = false;
    socket.once('listening', () => {
      bound = true;
    });
    socket.on('error', (error: Error) => {
      // ICMP errors and sends to unreachable cascade ports are expected while punching; a
      // bind failure of the current socket is not.
      if (this.socket === socket && !bound) this.bindFailed(port, error);
    });
    socket.on('message', (data: Buffer, from: RemoteInfo) => {
      if (this.socket !== socket || this.closed) return;
      const ep: Endpoint = { address: from.address, port: from.port };
      if (role === 'server') this.state.handleServer(this.now(), ep, data);
      else this.state.handlePeer(this.now(), ep, data);
      this.flush();
    });
    socket.bind(port, this.options.bindAddress);
    return socket;
  }

  private flush(): void {
    for (const action of this.state.poll()) {
      switch (action.type) {
        case 'send':
          this.socket?.send(action.data, action.to.port, action.to.address);
          break;
        case 'switch_socket':
          // The plugins close the server socket and put_packet opens a new ephemeral one.
          this.replaceSocket(0, 'server');
          break;
        case 'listen':
          // Like the original: close the socket, listen on the port it believes is its own.
          this.replaceSocket(action.port, 'peer');
          break;
        case 'event':
          this.emit('event', action.event);
          if (action.event.event === 'punched' && this.socket !== undefined) {
            this.settle?.resolve({ event: action.event, socket: this.socket });
          } else if (action.event.event === 'failed') {
            // The state already queued the plugin's own `cs`/`cc`; let it leave first.
            const socket = this.socket;
            setTimeout(() => socket?.close(), 50);
            this.settle?.reject(new HolePunchError(action.event.code, action.event.message));
          }
          break;
      }
    }
    if (this.timer !== undefined) clearTimeout(this.timer);
    const deadline = this.state.nextDeadline();
    if (deadline !== Infinity && !this.closed) {
      this.timer = setTimeout(
        () => {
          this.state.handleTimeout(this.now());
          this.flush();
        },
        Math.max(0, deadline - this.now()),
      );
    }
  }

  private replaceSocket(port: number, role: 'server' | 'peer'): void {
    const old = this.socket;
    old?.close();
    this.socket = this.open(port, role);
  }

  private bindFailed(port: number, error: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.socket?.close();
    this.emit('event', {
      event: 'failed',
      code: 'punch_failed',
      reason: 'socket_error',
      message: `cannot listen on port ${port}: ${String(error)}`,
    });
    this.settle?.reject(
      new HolePunchError('punch_failed', `cannot listen on port ${port}`, { cause: error }),
    );
  }
}
