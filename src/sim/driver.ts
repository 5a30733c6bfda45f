/**
 * What `UdpDriver` (src/driver/udp.ts) does for a core, on the simulated network: every call
 * into the core is followed by its work in order: sends leave from the socket they name,
 * `bind`/`unbind` open and close sockets on the core's host (a `bind` answered with
 * `Core.bound` once the core has returned, as the real driver answers after listening), and
 * events go to the caller after the core returned. One contract, so every socket of a client
 * (its NAT probes, its birthday sockets) and of the server (its probe and relay ports) runs
 * in virtual time.
 */
import { type Core, MAIN_SOCKET, type SocketId } from '../core/index.js';
import type { Endpoint } from '../protocol/index.js';
import type { SimAgent, SimNetwork, SimSocket } from './network.js';

/** Rounds of `bound` answers one drain may take (each may ask for more binds). */
const MAX_BIND_ROUNDS = 64;

export class SimDriver<E> implements SimAgent {
  readonly #net: SimNetwork;
  readonly #core: Core<E>;
  readonly #address: string;
  readonly #onEvent: (now: number, event: E) => void;
  readonly #sockets = new Map<SocketId, SimSocket>();

  /** `sockets`: the ids and ports bound before the core runs (the main one first). */
  constructor(
    net: SimNetwork,
    core: Core<E>,
    address: string,
    sockets: readonly (readonly [SocketId, number])[],
    onEvent: (now: number, event: E) => void = () => {},
  ) {
    this.#net = net;
    this.#core = core;
    this.#address = address;
    this.#onEvent = onEvent;
    for (const [id, port] of sockets) {
      this.#sockets.set(id, net.bind(address, port, this.#receiver(id)));
    }
  }

  /** The main socket's own address (before any NAT). */
  get local(): Endpoint {
    return (this.#sockets.get(MAIN_SOCKET) as SimSocket).local;
  }

  nextDeadline(): number {
    return this.#core.nextDeadline();
  }

  handleTimeout(now: number): void {
    this.#core.handleTimeout(now);
    this.drain(now);
  }

  /** Carries out the core's work (after the caller called into the core itself). */
  drain(now: number): void {
    for (let round = 0; round < MAX_BIND_ROUNDS; round++) {
      const answers: [SocketId, boolean][] = [];
      const core = this.#core;
      for (let work = core.poll(); work !== undefined; work = core.poll()) {
        switch (work.type) {
          case 'send':
            this.#sockets.get(work.socket ?? MAIN_SOCKET)?.send(work.to, work.data);
            break;
          case 'bind': {
            this.#unbind(work.socket);
            const socket = this.#net.tryBind(this.#address, work.port, this.#receiver(work.socket));
            if (socket !== undefined) this.#sockets.set(work.socket, socket);
            answers.push([work.socket, socket !== undefined]);
            break;
          }
          case 'unbind':
            this.#unbind(work.socket);
            break;
          case 'event':
            this.#onEvent(now, work.event);
            break;
        }
      }
      if (answers.length === 0) return;
      for (const [id, ok] of answers) core.bound(now, id, ok);
    }
  }

  #receiver(id: SocketId) {
    // A closed socket's port is gone from the network: nothing is delivered to it any more.
    return (now: number, from: Endpoint, data: Uint8Array): void => {
      this.#core.handle(now, from, data, id);
      this.drain(now);
    };
  }

  #unbind(id: SocketId): void {
    const socket = this.#sockets.get(id);
    if (socket === undefined) return;
    this.#sockets.delete(id);
    this.#net.unbind(socket.local);
  }
}
