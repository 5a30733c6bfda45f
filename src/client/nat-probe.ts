/**
 * The client's NAT classification while registering (docs/protocol-v2.md §6): a `probe` to
 * the server's main port, then one to its alternate port, and the class from the two public
 * ports (src/nat, shared with the doctor). Its own module: it runs before registration, with
 * its own budget, and hands the traversal one `NatClass`.
 */
import { natClassOf } from '../nat/index.js';
import {
  type Endpoint,
  encodeV2,
  type NatClass,
  sameEndpoint,
  type V2Message,
} from '../protocol/index.js';

/**
 * NAT classification while registering: a `probe` to the server's main port, then one to
 * its alternate port, each re-sent this often until answered...
 */
export const CLASSIFY_RETRY_MS = 25;
/** ...for at most this long from the start (then the class is `unknown`)... */
export const CLASSIFY_WITHIN_MS = 400;
/** ...and at most this many probes in all (64 bytes each). */
export const CLASSIFY_MAX_PROBES = 16;
/**
 * Between the two: the wait for the server's unasked answer from its alternate port to reach
 * our NAT first, a retry interval and this many round trips of the main probe...
 */
export const COLLIDE_WAIT_RTTS = 1.5;
/** ...and this long at most... */
export const COLLIDE_WAIT_MAX_MS = 150;
/**
 * ...after this many copies of that probe, sent at once: one lost answer must not hide such
 * a NAT.
 */
export const COLLIDE_PROBES = 3;

/** What the probe asks of the traversal now. */
export type NatProbeStep =
  /** Send this probe to the server (main or alternate port). */
  | { readonly type: 'send'; readonly to: Endpoint; readonly data: Uint8Array }
  /**
   * The main port answered: provoke the port collision (`collide`, with two fresh request
   * ids), then probe the alternate port.
   */
  | { readonly type: 'collide' }
  /** Done: register with this class. */
  | { readonly type: 'classified'; readonly nat: NatClass };

/**
 * NAT classification under way (`classifyNat`). Sans-IO and without callbacks: it says what
 * to do (`NatProbeStep`) and the traversal sends, with request ids from its own counter.
 */
export class NatProbe {
  readonly #server: Endpoint;
  readonly #until: number;
  #nextAt: number;
  #sent = 0;
  /** Request id of the probe to the main port, then of the one to the alternate port. */
  #id: number;
  #to: Endpoint;
  #mainPort: number | undefined;
  /** When the probe now awaited was last sent: its answer gives the round trip. */
  #sentAt: number;

  constructor(server: Endpoint, now: number, id: number) {
    this.#server = server;
    this.#until = now + CLASSIFY_WITHIN_MS;
    this.#nextAt = now;
    this.#id = id;
    this.#to = server;
    this.#sentAt = now;
  }

  /** When `tick` has something to do. */
  get nextAt(): number {
    return this.#nextAt;
  }

  /** (Re)sends the current probe, or gives up (`unknown`). */
  tick(now: number): NatProbeStep | undefined {
    if (now < this.#nextAt) return undefined;
    if (now >= this.#until || this.#sent >= CLASSIFY_MAX_PROBES) {
      return { type: 'classified', nat: 'unknown' };
    }
    this.#sent++;
    this.#nextAt = now + CLASSIFY_RETRY_MS;
    this.#sentAt = now;
    const data = encodeV2({
      type: 'probe',
      requestId: this.#id,
      changeAddress: false,
      changePort: false,
    });
    return { type: 'send', to: this.#to, data };
  }

  /** A `probe_reply` from the server's main or alternate port; `undefined` if not ours. */
  reply(
    from: Endpoint,
    msg: Extract<V2Message, { type: 'probe_reply' }>,
  ): NatProbeStep | undefined {
    if (msg.requestId !== this.#id || !sameEndpoint(from, this.#to)) return undefined;
    if (this.#mainPort !== undefined) {
      return { type: 'classified', nat: natClassOf(this.#mainPort, msg.observed.port) };
    }
    this.#mainPort = msg.observed.port;
    if (msg.altPort === 0 || msg.altPort === this.#server.port) {
      return { type: 'classified', nat: 'unknown' };
    }
    this.#to = { address: this.#server.address, port: msg.altPort };
    return { type: 'collide' };
  }

  /**
   * A NAT that lets unsolicited datagrams in to its own address moves a host to another
   * public port when the host then sends to where they came from (RFC 4787 §4.1, port
   * collision), and so does it to a peer whose punch arrives first: have the server answer
   * from its alternate port unasked (`COLLIDE_PROBES` copies of the returned probe, to the
   * main port), give that answer a round trip to arrive, then probe the alternate port under
   * `nextId`. Such a NAT then measures `edm-random`, as it behaves.
   */
  collide(now: number, provokeId: number, nextId: number): Uint8Array {
    const provoke = encodeV2({
      type: 'probe',
      requestId: provokeId,
      changeAddress: false,
      changePort: true,
    });
    this.#sent += COLLIDE_PROBES;
    this.#id = nextId;
    this.#nextAt =
      now +
      Math.min(COLLIDE_WAIT_MAX_MS, CLASSIFY_RETRY_MS + COLLIDE_WAIT_RTTS * (now - this.#sentAt));
    return provoke;
  }
}
