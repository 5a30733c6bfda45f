/**
 * Our relay allocations (docs/protocol-v2.md, "Relay"): one per peer without a direct path,
 * asked for, bound and kept bound. Its own module: the relay is the fallback every strategy
 * ends in, with its own timings and state.
 */
import {
  bytesKey,
  type Endpoint,
  encodeRelayBind,
  encodeV2,
  unmappedAddress,
  type V2Message,
} from '../protocol/index.js';
import { KEEPALIVE_INTERVAL_MS, REQUEST_RETRY_FIRST_MS, REQUEST_RETRY_MAX_MS } from './requests.js';

/** A bound relay allocation is bound again this often (one keepalive interval). */
export const RELAY_REBIND_MS = KEEPALIVE_INTERVAL_MS;

/** Our relay allocation towards one peer (docs/protocol-v2.md, "Relay"). */
export interface RelayState {
  phase: 'asking' | 'binding' | 'bound';
  port: number;
  id: Uint8Array;
  /** Signs each `relay_bind` (a fresh counter each time: `encodeRelayBind`). */
  bindToken: Uint8Array;
  /** The next bind: a retry while binding, the refresh once bound. */
  nextBindAt: number;
  bindIntervalMs: number;
}

/**
 * Our relay allocations by peer name, and the peers the server refused one for. Sans-IO: it
 * says which binds are due and builds them; the traversal sends them, with request ids (the
 * binds' counters) from its own counter.
 */
export class RelayAllocations {
  readonly #server: Endpoint;
  readonly #byPeer = new Map<string, RelayState>();
  /** Peers the relay could not be had for, with the server's word (`relayRefused`). */
  readonly #refused = new Map<string, string>();
  /**
   * The server is of revision 1 or later (its `registered` says how often to keepalive): it
   * takes signed `relay_bind`s. A revision-0 server gets the bare bindToken it knows.
   */
  signedBinds = false;

  constructor(server: Endpoint) {
    this.#server = server;
  }

  /** Neither asked for nor refused yet. */
  mayAsk(peer: string): boolean {
    return !this.#byPeer.has(peer) && !this.#refused.has(peer);
  }

  /** A `relay_allocate` for `peer` is on its way. */
  asking(peer: string): void {
    this.#byPeer.set(peer, {
      phase: 'asking',
      port: 0,
      id: new Uint8Array(0),
      bindToken: new Uint8Array(0),
      nextBindAt: Number.POSITIVE_INFINITY,
      bindIntervalMs: REQUEST_RETRY_FIRST_MS,
    });
  }

  isAsking(peer: string): boolean {
    return this.#byPeer.get(peer)?.phase === 'asking';
  }

  /** The server refused: the punch goes on, and `words` are the cause if the peer is missed. */
  refuse(peer: string, words: string): void {
    this.#byPeer.delete(peer);
    this.#refused.set(peer, words);
  }

  refusal(peer: string): string | undefined {
    return this.#refused.get(peer);
  }

  forgetRefusal(peer: string): void {
    this.#refused.delete(peer);
  }

  phase(peer: string): RelayState['phase'] | undefined {
    return this.#byPeer.get(peer)?.phase;
  }

  /** Our relay port towards `peer` once its allocation is bound. */
  boundPort(peer: string): number | undefined {
    const r = this.#byPeer.get(peer);
    return r?.phase === 'bound' ? r.port : undefined;
  }

  /** Every peer with an allocation asked for, binding or bound. */
  peers(): string[] {
    return [...this.#byPeer.keys()];
  }

  /** The server granted the allocation asked for `msg.peer` (`isAsking`): bind it now. */
  grant(now: number, msg: Extract<V2Message, { type: 'relay_granted' }>): RelayState {
    const r = this.#byPeer.get(msg.peer) as RelayState;
    r.phase = 'binding';
    r.port = msg.port;
    r.id = msg.id;
    r.bindToken = msg.bindToken;
    r.nextBindAt = now + REQUEST_RETRY_FIRST_MS;
    r.bindIntervalMs = REQUEST_RETRY_FIRST_MS * 2;
    return r;
  }

  /** The relay's address and port for an allocation. */
  endpointOf(r: RelayState): Endpoint {
    return { address: this.#server.address, port: r.port };
  }

  /**
   * A signed `relay_bind` with a fresh counter (`id`, our next request id): the relay moves a
   * bound side only for a counter it has not seen, so a captured bind replays as nothing.
   */
  bindDatagram(r: RelayState, id: number): Uint8Array {
    return this.signedBinds
      ? encodeRelayBind(r.bindToken, id, r.id)
      : encodeV2({ type: 'relay_bind', requestId: id, id: r.id, proof: r.bindToken });
  }

  /** A `relay_bound` from `from`: the peer whose allocation it bound, if any. */
  bound(now: number, from: Endpoint, id: Uint8Array): string | undefined {
    if (unmappedAddress(from.address) !== unmappedAddress(this.#server.address)) return undefined;
    for (const [name, r] of this.#byPeer) {
      if (r.phase !== 'binding' || r.port !== from.port || bytesKey(r.id) !== bytesKey(id))
        continue;
      r.phase = 'bound';
      // A revision-0 server moves a side to whichever source binds last: no refresh there.
      r.nextBindAt = this.signedBinds ? now + RELAY_REBIND_MS : Number.POSITIVE_INFINITY;
      return name;
    }
    return undefined;
  }

  /** The allocations to bind now (a retry while binding, the refresh once bound), rescheduled. */
  due(now: number): RelayState[] {
    const due: RelayState[] = [];
    for (const r of this.#byPeer.values()) {
      if (r.phase === 'asking' || now < r.nextBindAt) continue;
      due.push(r);
      if (r.phase === 'bound') {
        // Refreshed once a keepalive interval: after our NAT re-maps us, the relay follows
        // within one interval.
        r.nextBindAt = now + RELAY_REBIND_MS;
        continue;
      }
      r.nextBindAt = now + r.bindIntervalMs;
      r.bindIntervalMs = Math.min(r.bindIntervalMs * 2, REQUEST_RETRY_MAX_MS);
    }
    return due;
  }

  nextDeadline(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const r of this.#byPeer.values())
      if (r.phase !== 'asking') next = Math.min(next, r.nextBindAt);
    return next;
  }

  /** `peer`'s game goes direct now: its allocation is no longer refreshed (it idles out). */
  stopRefreshing(peer: string): void {
    const r = this.#byPeer.get(peer);
    if (r !== undefined) r.nextBindAt = Number.POSITIVE_INFINITY;
  }

  delete(peer: string): void {
    this.#byPeer.delete(peer);
  }

  /** The traversal ended: no more binds (the refusals stay, for its failure message). */
  clear(): void {
    this.#byPeer.clear();
  }
}
