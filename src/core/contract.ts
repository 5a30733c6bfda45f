import type { Endpoint } from '../protocol/index.js';

/**
 * Which of a driver's sockets: 0 is the main one. The server's NAT diagnosis sockets are 1-3
 * and each relay port is its own id; a client has only socket 0.
 */
export type SocketId = number;

/** The main socket's id. */
export const MAIN_SOCKET: SocketId = 0;

/**
 * One piece of work a core asks of its driver, in order (`Core.poll`). `E` is the core's
 * event type: events are handed to the application after the core has returned, never from
 * inside `handle`.
 */
export type Work<E> =
  /** Send `data` to `to` from socket `socket` (default `MAIN_SOCKET`). */
  | {
      readonly type: 'send';
      readonly to: Endpoint;
      readonly data: Uint8Array;
      readonly socket?: SocketId;
    }
  /**
   * (Re)open socket `socket` on local port `port` (0: any) at the main socket's address,
   * closing the one it replaces. Sends that follow go out from the new socket. The driver
   * answers with `Core.bound` once it is listening or has failed.
   */
  | { readonly type: 'bind'; readonly socket: SocketId; readonly port: number }
  /** Close socket `socket`; datagrams to it are no longer read. */
  | { readonly type: 'unbind'; readonly socket: SocketId }
  | { readonly type: 'event'; readonly event: E };

/**
 * The contract of every sans-IO core (the rendezvous server, the v2 client, the legacy
 * client), after quinn-proto and h11: input is bytes and time, output is pulled. A core
 * never reads a clock, owns a socket or arms a timer; `now` is milliseconds on any
 * monotonic scale, the same for every call.
 */
export interface Core<E> {
  /** One untrusted datagram that arrived on `socket` (default `MAIN_SOCKET`). Never throws. */
  handle(now: number, from: Endpoint, data: Uint8Array, socket?: SocketId): void;
  /** Runs what is due at `now` (retransmissions, expiries). */
  handleTimeout(now: number): void;
  /** The earliest `now` at which `handleTimeout` has work, or `Infinity`. */
  nextDeadline(): number;
  /** The next piece of work, or `undefined` when there is none. */
  poll(): Work<E> | undefined;
  /** The driver's answer to a `bind`: listening (`ok`), or the port could not be bound. */
  bound(now: number, socket: SocketId, ok: boolean): void;
}

/**
 * A FIFO of work for a core's `poll()`: O(1) push and poll, no `Array.shift` (a server
 * under load queues thousands of datagrams between two polls).
 */
export class WorkQueue<E> {
  #items: (Work<E> | undefined)[] = [];
  #head = 0;

  push(work: Work<E>): void {
    this.#items.push(work);
  }

  send(to: Endpoint, data: Uint8Array, socket?: SocketId): void {
    this.#items.push(
      socket === undefined ? { type: 'send', to, data } : { type: 'send', to, data, socket },
    );
  }

  event(event: E): void {
    this.#items.push({ type: 'event', event });
  }

  poll(): Work<E> | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const work = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
    return work;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }
}

/** Everything a core has queued, in order (tests and the simulator). */
export function drain<E>(core: Pick<Core<E>, 'poll'>): Work<E>[] {
  const out: Work<E>[] = [];
  for (let work = core.poll(); work !== undefined; work = core.poll()) out.push(work);
  return out;
}
