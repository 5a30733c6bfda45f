import { createSocket, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { MAIN_SOCKET } from '../core/index.js';
import { UdpDriver } from '../driver/index.js';
import { HolePunchError } from '../errors.js';
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
 * Lets the plugin's own `cs`/`cc`, queued with the failure, leave before its socket closes
 * (the socket may still be binding after a switch).
 */
const CLOSE_AFTER_FAILURE_MS = 50;

/**
 * The original plugin's client on `node:dgram`: `LegacyClientState` run by `UdpDriver`.
 * Emits `event` with every `LegacyClientEvent`; `punched()` resolves with the open peer socket
 * or rejects with a `HolePunchError` (`session_closed`, `punch_failed`, `aborted`).
 */
export class LegacyClient extends EventEmitter {
  private readonly state: LegacyClientState;
  private readonly options: LegacyClientOptions;
  private driver: UdpDriver<LegacyClientEvent> | undefined;
  private closed = false;
  /** Why the last bind failed: the cause of the `socket_error` rejection. */
  private bindError: Error | undefined;
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

  /** Binds the server socket (rejecting with its bind error), then starts the plugin's flow. */
  async start(): Promise<void> {
    const socket = await bindServerSocket(
      this.options.localPort ?? this.options.server.port,
      this.options.bindAddress,
    );
    if (this.closed) {
      socket.close();
      return;
    }
    this.driver = new UdpDriver({
      core: this.state,
      sockets: new Map([[MAIN_SOCKET, socket]]),
      onEvent: (event) => this.onEvent(event),
      onBindError: (error) => {
        this.bindError = error;
      },
      // Every later socket (the switches, the peer socket) on the same address, IPv4 like the
      // plugins' PacketPeerUDP.
      socketType: 'udp4',
      ...(this.options.bindAddress === undefined ? {} : { bindAddress: this.options.bindAddress }),
    });
    this.driver.run((now) => this.state.start(now));
  }

  punched(): Promise<LegacyPunchResult> {
    return this.result;
  }

  /** `finalize_peers()`: `ep:KEY` (see LegacyClientState.finalizePeers). */
  finalizePeers(): void {
    this.call(() => this.state.finalizePeers());
  }

  /** `checkout()`: `cc:NAME`, the master revisions' only way to leave. */
  checkout(): void {
    this.call(() => this.state.checkout());
  }

  /** Lobby revision: `client_disconnect()` (`cc`, then failed/aborted). */
  clientDisconnect(): void {
    this.call(() => this.state.clientDisconnect());
  }

  /** Lobby revision: `close_session()` (`cs` from the host, then failed/aborted). */
  closeSession(): void {
    this.call(() => this.state.closeSession());
  }

  /** Stops the handshake; the peer socket is closed unless it was handed out by `punched()`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.state.finished) {
      void this.driver?.close();
      this.settle?.reject(new HolePunchError('aborted', 'legacy client closed'));
    } else {
      this.driver?.stop();
    }
  }

  private call(action: () => void): void {
    if (this.driver !== undefined) {
      this.driver.run(action);
      return;
    }
    // Before `start()` there is no socket: what the state sends is lost, its events are not.
    action();
    for (let work = this.state.poll(); work !== undefined; work = this.state.poll()) {
      if (work.type === 'event') this.onEvent(work.event);
    }
  }

  private onEvent(event: LegacyClientEvent): void {
    this.emit('event', event);
    const driver = this.driver;
    if (event.event === 'punched') {
      driver?.stop();
      const socket = driver?.detach(MAIN_SOCKET);
      if (socket !== undefined) this.settle?.resolve({ event, socket });
    } else if (event.event === 'failed') {
      if (driver !== undefined) {
        driver.stop();
        setTimeout(() => void driver.close(), CLOSE_AFTER_FAILURE_MS);
      }
      const cause = event.reason === 'socket_error' ? this.bindError : undefined;
      this.settle?.reject(
        new HolePunchError(event.code, event.message, cause === undefined ? undefined : { cause }),
      );
    }
  }
}

/** The first socket, bound before the driver exists so that `start()` can reject. */
function bindServerSocket(port: number, address: string | undefined): Promise<Socket> {
  const socket = createSocket({ type: 'udp4' });
  return new Promise((resolve, reject) => {
    socket.once('error', (error) => {
      try {
        socket.close();
      } catch {}
      reject(error);
    });
    socket.bind(port, address, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}
