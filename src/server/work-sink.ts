/**
 * The sinks through which the server's tables hand work to the rendezvous core (issue 23,
 * point 5: no callback inside a core). Each only appends to the core's `WorkQueue`, which
 * the driver pulls with `poll()` after the core returned: no table ever gets the driver,
 * a socket or the application back through them. Apart so that what a table may do with
 * its `Outbox` and `RelayIo` is a class to read, not a closure inside a constructor.
 */
import { MAIN_SOCKET, type WorkQueue } from '../core/index.js';
import type { Endpoint } from '../protocol/index.js';
import type { ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';
import type { RelayIo } from './v2-relay.js';

/**
 * Replies of the tables and the probe responder: `send` work on the main socket or a probe
 * socket. Counting at the one place every reply passes keeps the tables free of it.
 */
export class ReplySink<E> implements Outbox {
  readonly #work: WorkQueue<E>;
  readonly #counters: ServerCounters;

  constructor(work: WorkQueue<E>, counters: ServerCounters) {
    this.#work = work;
    this.#counters = counters;
  }

  send(to: Endpoint, data: Uint8Array, via?: number): void {
    this.#counters.datagramsOut++;
    this.#counters.bytesOut += data.length;
    this.#work.send(to, data, via === MAIN_SOCKET ? undefined : via);
  }
}

/**
 * The relay's ports as work: `bind`/`unbind` of a socket whose id is the port, and `send`
 * from it. The relay counts its own datagrams (relayed ones apart).
 */
export class RelaySocketSink<E> implements RelayIo {
  readonly #work: WorkQueue<E>;

  constructor(work: WorkQueue<E>) {
    this.#work = work;
  }

  open(port: number): void {
    this.#work.push({ type: 'bind', socket: port, port });
  }

  close(port: number): void {
    this.#work.push({ type: 'unbind', socket: port });
  }

  send(port: number, to: Endpoint, data: Uint8Array): void {
    this.#work.send(to, data, port);
  }
}
