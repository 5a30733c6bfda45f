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

  finalizePeers(): void {
    this.state.finalizePeers();
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

  private bind(port: number, role: 'server' | 'peer'): Promise<Socket> {
    const socket = createSocket({ type: 'udp4' });
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, this.options.bindAddress, () => {
        socket.off('error', reject);
        socket.on('error', () => {
          // ICMP errors and sends to unreachable cascade ports are expected while punching.
        });
        socket.on('message', (data: Buffer, from: RemoteInfo) => {
          if (this.socket !== socket || this.closed) return;
          const ep: Endpoint = { address: from.address, port: from.port };
          if (role === 'server') this.state.handleServer(this.now(), ep, data);
          else this.state.handlePeer(this.now(), ep, data);
          this.flush();
        });
        resolve(socket);
      });
    });
  }

  private flush(): void {
    for (const action of this.state.poll()) {
      switch (action.type) {
        case 'send':
          this.socket?.send(action.data, action.to.port, action.to.address);
          break;
        case 'listen':
          void this.relisten(action.port);
          break;
        case 'event':
          this.emit('event', action.event);
          if (action.event.event === 'punched' && this.socket !== undefined) {
            this.settle?.resolve({ event: action.event, socket: this.socket });
          } else if (action.event.event === 'failed') {
            this.socket?.send(
              this.state.leave(),
              this.options.server.port,
              this.options.server.address,
            );
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

  /** Like the original: close the socket, listen again on the port it believes is its own. */
  private async relisten(port: number): Promise<void> {
    const old = this.socket;
    this.socket = undefined;
    old?.close();
    try {
      this.socket = await this.bind(port, 'peer');
      this.flush();
    } catch (error) {
      this.closed = true;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.emit('event', {
        event: 'failed',
        code: 'punch_failed',
        message: `cannot listen on port ${port}: ${String(error)}`,
      });
      this.settle?.reject(
        new HolePunchError('punch_failed', `cannot listen on port ${port}`, { cause: error }),
      );
    }
  }
}
