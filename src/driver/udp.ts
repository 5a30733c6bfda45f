import dgram from 'node:dgram';
import { type Core, MAIN_SOCKET, type SocketId } from '../core/index.js';

// setTimeout clamps longer delays to 1 ms; wake up early instead and re-arm.
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export interface UdpDriverOptions<E> {
  readonly core: Core<E>;
  /** The sockets the core starts with, already bound (`MAIN_SOCKET` at least, usually). */
  readonly sockets: ReadonlyMap<SocketId, dgram.Socket>;
  /** Every event the core emits, called after the core has returned (never inside it). */
  readonly onEvent?: (event: E) => void;
  /** A send the kernel or Node refused (bad address, port 0, no route). */
  readonly onSendError?: (error: unknown, socket: SocketId) => void;
  /** An error on a listening socket (ICMP-driven errors are common while punching). */
  readonly onSocketError?: (error: Error, socket: SocketId) => void;
  /** Why a `bind` failed, just before the core hears of it (`Core.bound` not ok). */
  readonly onBindError?: (error: Error, socket: SocketId) => void;
  /** Every datagram before the core sees it (trace logging). */
  readonly onDatagram?: (from: dgram.RemoteInfo, bytes: number, socket: SocketId) => void;
  /** Address for sockets opened by `bind` work. Default: the main socket's address. */
  readonly bindAddress?: string;
  /** Socket type for sockets opened by `bind` work. Default: the main socket's family. */
  readonly socketType?: 'udp4' | 'udp6';
  /** Monotonic milliseconds. Default `performance.now`. */
  readonly now?: () => number;
}

/**
 * The one shell of every sans-IO core: owns its sockets and its single timer, feeds the core
 * datagrams and timeouts, and carries out what the core's `poll()` asks for: datagrams leave
 * the process here (`socket.send`), sockets open and close here, and the application's
 * event handlers run here, after the core has returned.
 */
export class UdpDriver<E> {
  readonly #core: Core<E>;
  readonly #options: UdpDriverOptions<E>;
  readonly #sockets = new Map<SocketId, dgram.Socket>();
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #armedDeadline = Number.POSITIVE_INFINITY;
  #stopped = false;
  #flushing = false;
  readonly #events: E[] = [];
  /** Sends still in the kernel's hands; counted only once `trackSends()` was called. */
  #pendingSends = 0;
  #tracking = false;
  #onSendsDone: (() => void) | undefined;

  constructor(options: UdpDriverOptions<E>) {
    this.#core = options.core;
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    for (const [id, socket] of options.sockets) this.#adopt(id, socket);
  }

  /** The socket behind `id`, if open. */
  socket(id: SocketId = MAIN_SOCKET): dgram.Socket | undefined {
    return this.#sockets.get(id);
  }

  /**
   * Calls into the core from the application (start, finalize, a game datagram to send),
   * then carries out the work it queued.
   */
  run<T>(call: (now: number) => T): T {
    const result = call(this.#now());
    this.flush();
    return result;
  }

  /** Carries out every queued piece of work, then re-arms the timer. */
  flush(): void {
    if (this.#flushing) return; // the outer flush picks up what a handler queued
    this.#flushing = true;
    try {
      for (;;) {
        this.#pollAll();
        const event = this.#events.shift();
        if (event === undefined) break;
        this.#options.onEvent?.(event);
      }
    } finally {
      this.#flushing = false;
    }
    this.#arm();
  }

  /**
   * Stops reading `id` and hands the socket over: the driver will neither read it nor close
   * it again.
   */
  detach(id: SocketId = MAIN_SOCKET): dgram.Socket | undefined {
    const socket = this.#sockets.get(id);
    if (socket === undefined) return undefined;
    this.#sockets.delete(id);
    socket.removeAllListeners('message');
    socket.removeAllListeners('error');
    socket.on('error', () => {});
    return socket;
  }

  /** From now on, count sends in flight so that `sendsSettled` can wait for them. */
  trackSends(): void {
    this.#tracking = true;
  }

  /** Resolves once every tracked send has left (or after `limitMs`). */
  sendsSettled(limitMs: number): Promise<void> {
    if (this.#pendingSends === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const giveUp = setTimeout(done, limitMs);
      function done(): void {
        clearTimeout(giveUp);
        resolve();
      }
      this.#onSendsDone = done;
    });
  }

  /** Stops the timer and reading; sockets stay open until `close`. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Stops, then closes every socket the driver still owns. */
  async close(): Promise<void> {
    this.stop();
    const closing = [...this.#sockets.values()].map(
      (socket) =>
        new Promise<void>((resolve) => {
          try {
            socket.close(() => resolve());
          } catch {
            resolve(); // already closed
          }
        }),
    );
    this.#sockets.clear();
    await Promise.all(closing);
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  #pollAll(): void {
    const core = this.#core;
    for (let work = core.poll(); work !== undefined; work = core.poll()) {
      switch (work.type) {
        case 'send':
          this.#send(work.socket ?? MAIN_SOCKET, work.to.address, work.to.port, work.data);
          break;
        case 'bind':
          this.#bind(work.socket, work.port);
          break;
        case 'unbind':
          this.#unbind(work.socket);
          break;
        case 'event':
          this.#events.push(work.event);
          break;
      }
    }
  }

  #send(id: SocketId, address: string, port: number, data: Uint8Array): void {
    const socket = this.#sockets.get(id);
    if (socket === undefined) return;
    // A send that fails (Node throws at once for port 0 or a bad address) fails alone: the
    // core goes on with the next member, session and timer.
    try {
      if (this.#tracking) {
        this.#pendingSends++;
        // A closure per send only while tracking (shutdown), so an error names its socket.
        socket.send(data, port, address, (error) => this.#trackedSendDone(error, id));
      } else {
        socket.send(data, port, address);
      }
    } catch (error) {
      if (this.#tracking) this.#pendingSends--;
      this.#options.onSendError?.(error, id);
    }
  }

  #trackedSendDone(error: Error | null, id: SocketId): void {
    this.#pendingSends--;
    if (error) this.#options.onSendError?.(error, id);
    if (this.#pendingSends === 0) this.#onSendsDone?.();
  }

  #bind(id: SocketId, port: number): void {
    this.#unbind(id);
    const main = this.#sockets.get(MAIN_SOCKET);
    let address = this.#options.bindAddress;
    let type = this.#options.socketType;
    if (main !== undefined && (address === undefined || type === undefined)) {
      const local = main.address();
      address ??= local.address;
      type ??= local.family === 'IPv6' ? 'udp6' : 'udp4';
    }
    const socket = dgram.createSocket(
      type === 'udp6' ? { type: 'udp6', ipv6Only: false } : { type: 'udp4' },
    );
    let listening = false;
    socket.on('error', (error) => {
      if (listening) {
        this.#options.onSocketError?.(error, id);
        return;
      }
      // Taken by another program, or not ours to bind: the core decides what next.
      if (this.#sockets.get(id) === socket) this.#sockets.delete(id);
      try {
        socket.close();
      } catch {}
      if (this.#stopped) return;
      this.#options.onBindError?.(error, id);
      this.run((now) => this.#core.bound(now, id, false));
    });
    this.#listen(id, socket);
    this.#sockets.set(id, socket);
    // node:dgram queues sends until the bind completes, so the core's sends that follow a
    // bind leave from the new socket, in order.
    socket.bind({ port, ...(address === undefined ? {} : { address }), exclusive: true }, () => {
      listening = true;
      if (this.#stopped || this.#sockets.get(id) !== socket) return;
      this.run((now) => this.#core.bound(now, id, true));
    });
  }

  #unbind(id: SocketId): void {
    const socket = this.#sockets.get(id);
    if (socket === undefined) return;
    this.#sockets.delete(id);
    try {
      socket.close();
    } catch {}
  }

  #adopt(id: SocketId, socket: dgram.Socket): void {
    this.#sockets.set(id, socket);
    socket.on('error', (error) => this.#options.onSocketError?.(error, id));
    this.#listen(id, socket);
  }

  #listen(id: SocketId, socket: dgram.Socket): void {
    const onDatagram = this.#options.onDatagram;
    socket.on('message', (data: Buffer, from: dgram.RemoteInfo) => {
      if (this.#stopped || this.#sockets.get(id) !== socket) return;
      onDatagram?.(from, data.length, id);
      this.#core.handle(this.#now(), from, data, id);
      this.flush();
    });
  }

  // One timer for the whole core: re-armed only when the next deadline moves earlier (a
  // later one just wakes the core early once).
  #arm(): void {
    if (this.#stopped) return;
    const next = this.#core.nextDeadline();
    if (next >= this.#armedDeadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedDeadline = next;
    const delay = Math.min(Math.max(0, Math.ceil(next - this.#now())), MAX_TIMER_DELAY_MS);
    this.#timer = setTimeout(this.#onTimer, delay);
    this.#timer.unref();
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#armedDeadline = Number.POSITIVE_INFINITY;
    if (this.#stopped) return;
    this.#core.handleTimeout(this.#now());
    this.flush();
  };
}
