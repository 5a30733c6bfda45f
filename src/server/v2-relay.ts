/**
 * The transparent relay of the v2 server (docs/protocol-v2.md, "Relay"), like a TURN
 * allocation or noray's relay: a relayed pair of members gets one port on the relay. Each
 * side proves with a `relay_bind` (allocation id + secret, sent from its game socket to the
 * relay port) which source address is its own; after that, raw datagrams from exactly that
 * source go out unchanged, from the same port, to the other side's bound source. Game
 * transports (ENet and the like) run over it untouched: each side sees its peer as
 * `relayAddress:port`.
 *
 * Sans-IO: datagrams come in with the relay port they arrived on (`handle`), go out through
 * `RelayIo.send` with the port to send from; ports are opened and closed through `RelayIo`
 * and the driver reports back whether a bind worked (`portOpened` / `portFailed`).
 *
 * Rules: allocations are capabilities (random ids and secrets issued to a member of one
 * session instance; a new session under the same name never gets or changes them); nothing
 * is sent to a source that has not bound; a bound side moves to another source only with a
 * fresh proof (a signed bind with a greater counter); one datagram out per datagram in, same
 * bytes; capped per allocation and in total (bytes/s, packets/s), per session (a full lobby's
 * pairs), per source (a share of the ports; a source as `sourceKey` says: IPv4 address, IPv6
 * /64) and in total (the ports).
 */
import {
  decodeV2,
  type Endpoint,
  encodeV2,
  mayBeRelayBind,
  RELAY_BIND_TOKEN_BYTES,
  RELAY_ID_BYTES,
  relayBindProof,
  sameEndpoint,
} from '../protocol/index.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';
import { sourceKey } from './source-limits.js';

/** An allocation nothing was bound to or sent through for this long is closed. */
export const RELAY_IDLE_MS = 60_000;
/** Default relay ports (on the server's address), one per relayed pair. */
export const DEFAULT_RELAY_PORTS: RelayPortRange = { low: 40_000, high: 40_999 };
/** Per allocation, both directions together: a game's traffic with room to spare. */
export const RELAY_BYTES_PER_SECOND = 2_000_000;
export const RELAY_PACKETS_PER_SECOND = 4_000;
/**
 * Part of the relay's ports one source (an IPv4 address, an IPv6 /64) may take part in: half,
 * so that a full 32-player lobby behind one address (496 pairs) fits on the default 1000
 * ports, and the other half stays for everyone else.
 */
export const RELAY_SOURCE_SHARE = 0.5;
/**
 * How often the relay's refusals and drops reach the log (one line per interval with the
 * counts by reason, not one per request or datagram).
 */
export const RELAY_LOG_INTERVAL_MS = 10_000;

/** Pairs of a lobby of `players`: what it needs when every pair is relayed. */
export function lobbyPairs(players: number): number {
  return players > 1 ? (players * (players - 1)) / 2 : 0;
}
/** A port whose bind failed (another program holds it) is left alone this long. */
export const RELAY_PORT_RETRY_MS = 60_000;

export interface RelayPortRange {
  readonly low: number;
  readonly high: number;
}

/**
 * The lowest relay port. A relay port doubles as its socket's id in the server core's work
 * (`Work.socket`), where 0 is the main socket and 1-3 the NAT diagnosis sockets; ports
 * below 1024 are privileged anyway.
 */
export const MIN_RELAY_PORT = 1024;

/** Why `range` cannot be the relay's, or undefined when it can. */
export function relayPortRangeProblem(range: RelayPortRange): string | undefined {
  const { low, high } = range;
  if (
    Number.isInteger(low) &&
    Number.isInteger(high) &&
    low >= MIN_RELAY_PORT &&
    high <= 65535 &&
    low <= high
  ) {
    return undefined;
  }
  return `relay ports must be LOW-HIGH, ports ${MIN_RELAY_PORT}-65535 with LOW <= HIGH, got ${low}-${high}`;
}

/**
 * What the relay needs done with its ports' sockets. The server core's `RelaySocketSink`
 * (work-sink.ts) appends each call to its work queue as `bind`/`unbind`/`send` work for its
 * driver, with the port as the socket id.
 */
export interface RelayIo {
  /** Bind a socket on `port` (then call `portOpened` or `portFailed`). */
  open(port: number): void;
  close(port: number): void;
  /** Send `data` from the socket on `port`. */
  send(port: number, to: Endpoint, data: Uint8Array): void;
}

export interface RelayLimits {
  /** Allocations at once (each takes one port). Default: one per port. */
  readonly maxAllocations: number;
  /**
   * Part of the ports (0-1) one source may take part in, `RELAY_SOURCE_SHARE` by default: an
   * allocation counts once for each source among its two sides.
   */
  readonly sourceShare: number;
  /**
   * Allocations one session may hold at once. 0 (the default): the pairs of a full lobby of
   * the session's size, `lobbyPairs(maxPlayers)`.
   */
  readonly maxPerSession: number;
  /** Per allocation, both ways together (1 s of burst). */
  readonly bytesPerSecond: number;
  readonly packetsPerSecond: number;
  /** All allocations together (1 s of burst); Infinity (the default): no cap. */
  readonly totalBytesPerSecond: number;
  readonly totalPacketsPerSecond: number;
  readonly idleMs: number;
}

/** Why the relay dropped a datagram it could have forwarded (counted by reason). */
export type RelayDrop = 'pair_rate' | 'server_rate';

/** The `rejections` kind of each drop (`relay_rate_limited` as before for the pair's cap). */
const RELAY_DROP_KINDS: Readonly<Record<RelayDrop, string>> = {
  pair_rate: 'relay_rate_limited',
  server_rate: 'relay_server_rate_limited',
};

/** A member as the session table knows it when it asks. */
export interface RelayMember {
  readonly name: string;
  /** Hex of the member's session token (a later `leave`/`close` with it closes its allocations). */
  readonly tokenKey: string;
  /** The member's validated endpoint towards the server. */
  readonly endpoint: Endpoint;
  readonly isHost: boolean;
}

export interface RelayRequest {
  /** The session instance (never reused, unlike names). */
  readonly instance: number;
  /** The session's lobby size (its `maxPlayers`), for the per-session cap. */
  readonly maxPlayers: number;
  readonly self: RelayMember;
  readonly peer: RelayMember;
  readonly requestId: number;
}

interface Side {
  readonly name: string;
  tokenKey: string;
  control: Endpoint;
  readonly isHost: boolean;
  readonly id: Uint8Array;
  readonly bindToken: Uint8Array;
  /** The source its authenticated `relay_bind` came from; nothing is sent anywhere else. */
  bound: Endpoint | undefined;
  /** The counter (request id) of the last signed bind taken; -1: none yet. */
  counter: number;
}

interface Waiter {
  readonly side: 0 | 1;
  readonly requestId: number;
}

interface Allocation {
  readonly key: string;
  readonly instance: number;
  port: number;
  readonly sides: [Side, Side];
  open: boolean;
  closed: boolean;
  waiters: Waiter[];
  lastActive: number;
  bytes: number;
  packets: number;
  refilledAt: number;
  /** The sources (`sourceKey`) it counts against, once each. */
  sources: string[];
}

export interface RelayOptions {
  /** The main socket: `relay_granted` and refusals go out there. */
  readonly outbox: Outbox;
  readonly io: RelayIo;
  readonly counters: ServerCounters;
  readonly randomBytes: (bytes: number) => Uint8Array;
  readonly ports: RelayPortRange;
  readonly limits?: Partial<RelayLimits>;
}

/** Why an allocation could not be had, for the `error` the session table sends. */
export type RelayRefusal = 'full' | 'source_full' | 'session_full' | 'no_port';

/** The `relay_unavailable` message of each refusal: what is full, and what to do. */
export const RELAY_REFUSAL_MESSAGES: Readonly<Record<RelayRefusal, string>> = {
  // At most 59 bytes: an error answers with at most 3x a 29-byte relay_allocate.
  full: 'The relay is full: every relay port is in use.',
  source_full: 'The relay is full for your address (its share of ports).',
  session_full: 'The relay is full for this session (one per pair).',
  no_port: 'The relay has no free port.',
};

/** Constant-time comparison of two secrets. */
function sameSecret(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

export class RelayAllocations {
  readonly #outbox: Outbox;
  readonly #io: RelayIo;
  readonly #counters: ServerCounters;
  readonly #randomBytes: (bytes: number) => Uint8Array;
  readonly #ports: RelayPortRange;
  readonly #limits: RelayLimits;
  readonly #byKey = new Map<string, Allocation>();
  readonly #byPort = new Map<number, Allocation>();
  readonly #byInstance = new Map<number, Set<Allocation>>();
  readonly #bySource = new Map<string, number>();
  /** Allocations one source may take part in: `sourceShare` of the ports. */
  readonly #maxPerSource: number;
  /** The server-wide buckets (`totalBytesPerSecond`, `totalPacketsPerSecond`). */
  #totalBytes: number;
  #totalPackets: number;
  #totalRefilledAt = Number.NEGATIVE_INFINITY;
  /** Ports whose bind failed, until when they are left alone. */
  readonly #failedPorts = new Map<number, number>();
  #cursor: number;
  /** The last bind or forwarded datagram on any allocation (for the drain before a stop). */
  #lastActiveAt = Number.NEGATIVE_INFINITY;
  #sweepAt = Number.POSITIVE_INFINITY;

  constructor(options: RelayOptions) {
    this.#outbox = options.outbox;
    this.#io = options.io;
    this.#counters = options.counters;
    this.#randomBytes = options.randomBytes;
    const { low, high } = options.ports;
    const problem = relayPortRangeProblem(options.ports);
    if (problem !== undefined) throw new RangeError(problem);
    this.#ports = { low, high };
    const portCount = high - low + 1;
    const l = options.limits ?? {};
    this.#limits = {
      maxAllocations: Math.min(l.maxAllocations ?? portCount, portCount),
      sourceShare: l.sourceShare ?? RELAY_SOURCE_SHARE,
      maxPerSession: l.maxPerSession ?? 0,
      bytesPerSecond: l.bytesPerSecond ?? RELAY_BYTES_PER_SECOND,
      packetsPerSecond: l.packetsPerSecond ?? RELAY_PACKETS_PER_SECOND,
      totalBytesPerSecond: l.totalBytesPerSecond ?? Number.POSITIVE_INFINITY,
      totalPacketsPerSecond: l.totalPacketsPerSecond ?? Number.POSITIVE_INFINITY,
      idleMs: l.idleMs ?? RELAY_IDLE_MS,
    };
    this.#maxPerSource = Math.floor(this.#limits.sourceShare * portCount);
    this.#totalBytes = this.#limits.totalBytesPerSecond;
    this.#totalPackets = this.#limits.totalPacketsPerSecond;
    this.#cursor = low;
  }

  /** Open allocations (relay channels), one port each. */
  get size(): number {
    return this.#byKey.size;
  }

  get limits(): RelayLimits {
    return this.#limits;
  }

  /** Allocations one source may take part in (`sourceShare` of the ports). */
  get maxPerSource(): number {
    return this.#maxPerSource;
  }

  /** Allocations `source` (an address; its `sourceKey` counts) takes part in now. */
  sourceCount(address: string): number {
    return this.#bySource.get(sourceKey(address)) ?? 0;
  }

  /** Allocations of session `instance` open now. */
  sessionCount(instance: number): number {
    return this.#byInstance.get(instance)?.size ?? 0;
  }

  /** When the relay last bound a side or forwarded a datagram (-Infinity: never). */
  get lastActiveAt(): number {
    return this.#lastActiveAt;
  }

  /**
   * Grants `self` an allocation towards `peer` (the same port and allocation for both sides
   * of the pair of this session instance; asking again repeats the grant). The answer
   * (`relay_granted`) goes to `self.endpoint` once the port is open. Returns a refusal when
   * the relay is full; the caller answers it.
   */
  allocate(now: number, req: RelayRequest): RelayRefusal | undefined {
    const [first, second] =
      req.self.name < req.peer.name ? [req.self, req.peer] : [req.peer, req.self];
    const key = `${req.instance}\u0000${first.name}\u0000${second.name}`;
    const sideIndex: 0 | 1 = req.self === first ? 0 : 1;
    let alloc = this.#byKey.get(key);
    if (alloc === undefined) {
      const refusal = this.#refusal(req.instance, req.maxPlayers, first, second);
      if (refusal !== undefined) {
        this.#counters.relayRefusals[refusal] = (this.#counters.relayRefusals[refusal] ?? 0) + 1;
        return refusal;
      }
      const port = this.#freePort(now);
      if (port === undefined) {
        this.#counters.relayRefusals.no_port = (this.#counters.relayRefusals.no_port ?? 0) + 1;
        return 'no_port';
      }
      alloc = {
        key,
        instance: req.instance,
        port,
        sides: [this.#side(first), this.#side(second)],
        open: false,
        closed: false,
        waiters: [],
        lastActive: now,
        bytes: this.#limits.bytesPerSecond,
        packets: this.#limits.packetsPerSecond,
        refilledAt: now,
        sources: [],
      };
      this.#byKey.set(key, alloc);
      this.#byPort.set(port, alloc);
      let set = this.#byInstance.get(req.instance);
      if (set === undefined) {
        set = new Set();
        this.#byInstance.set(req.instance, set);
      }
      set.add(alloc);
      this.#countSources(alloc, 1);
      if (!Number.isFinite(this.#sweepAt)) this.#sweepAt = now + this.#limits.idleMs / 2;
      this.#io.open(port);
    }
    // The session knows the member's endpoint and token now (it may have been re-mapped).
    const side = alloc.sides[sideIndex];
    if (!sameEndpoint(side.control, req.self.endpoint)) {
      this.#countSources(alloc, -1);
      side.control = req.self.endpoint;
      this.#countSources(alloc, 1);
    }
    side.tokenKey = req.self.tokenKey;
    alloc.lastActive = now;
    if (alloc.open) this.#grant(alloc, sideIndex, req.requestId);
    else if (!alloc.waiters.some((w) => w.side === sideIndex && w.requestId === req.requestId)) {
      alloc.waiters.push({ side: sideIndex, requestId: req.requestId });
    }
    return undefined;
  }

  /** The shell bound `port`: pending grants on it go out. */
  portOpened(_now: number, port: number): void {
    const alloc = this.#byPort.get(port);
    if (alloc === undefined || alloc.open) return;
    alloc.open = true;
    for (const w of alloc.waiters) this.#grant(alloc, w.side, w.requestId);
    alloc.waiters = [];
  }

  /** The shell could not bind `port` (another program holds it): move to another one. */
  portFailed(now: number, port: number): void {
    countRejection(this.#counters, 'relay_port_failed');
    this.#failedPorts.set(port, now + RELAY_PORT_RETRY_MS);
    const alloc = this.#byPort.get(port);
    if (alloc === undefined || alloc.open) return;
    this.#byPort.delete(port);
    const next = this.#freePort(now);
    if (next === undefined) {
      // No grant went out for it yet: the askers' retries get `relay_unavailable`.
      this.#close(alloc, false);
      return;
    }
    alloc.port = next;
    this.#byPort.set(next, alloc);
    this.#io.open(next);
  }

  /** One datagram that arrived on relay `port` from `from`. Never throws. */
  handle(now: number, port: number, from: Endpoint, data: Uint8Array): void {
    this.#counters.datagramsIn++;
    this.#counters.bytesIn += data.length;
    const alloc = this.#byPort.get(port);
    if (alloc === undefined || !alloc.open) {
      countRejection(this.#counters, 'relay_no_allocation');
      return;
    }
    if (mayBeRelayBind(data)) {
      const decoded = decodeV2(data);
      if (decoded.ok && decoded.msg.type === 'relay_bind') {
        this.#bind(now, alloc, from, decoded.msg.id, decoded.msg.proof, decoded.msg.requestId);
        return;
      }
    }
    let s: 0 | 1;
    if (alloc.sides[0].bound !== undefined && sameEndpoint(alloc.sides[0].bound, from)) s = 0;
    else if (alloc.sides[1].bound !== undefined && sameEndpoint(alloc.sides[1].bound, from)) s = 1;
    else {
      countRejection(this.#counters, 'relay_unbound_source');
      return;
    }
    const to = alloc.sides[s === 0 ? 1 : 0].bound;
    if (to === undefined) {
      countRejection(this.#counters, 'relay_peer_unbound');
      return;
    }
    const drop = this.#spend(now, alloc, data.length);
    if (drop !== undefined) {
      countRejection(this.#counters, RELAY_DROP_KINDS[drop]);
      this.#counters.relayDrops[drop] = (this.#counters.relayDrops[drop] ?? 0) + 1;
      return;
    }
    alloc.lastActive = now;
    this.#lastActiveAt = now;
    this.#counters.datagramsRelayed++;
    this.#counters.relayBytes += data.length;
    this.#send(alloc.port, to, data);
  }

  /** A member of a live session left: its allocations close. */
  closeMember(instance: number, name: string): void {
    for (const alloc of [...(this.#byInstance.get(instance) ?? [])]) {
      if (alloc.sides.some((s) => s.name === name)) this.#close(alloc);
    }
  }

  /** A session ended (closed, expired, its host left): every allocation of it closes. */
  closeSession(instance: number): void {
    for (const alloc of [...(this.#byInstance.get(instance) ?? [])]) this.#close(alloc);
  }

  /**
   * A `leave` (or the host's `close`, `wholeSession`) for a session the table already forgot:
   * the member's allocations (or all of the session's) close, when the token is the one the
   * member asked with and the request comes from its endpoint. Returns whether any closed.
   */
  closeByToken(tokenKey: string, from: Endpoint, wholeSession: boolean): boolean {
    let closed = false;
    for (const alloc of [...this.#byKey.values()]) {
      if (alloc.closed) continue;
      const side = alloc.sides.find(
        (s) => s.tokenKey === tokenKey && sameEndpoint(s.control, from),
      );
      if (side === undefined) continue;
      closed = true;
      if (wholeSession && side.isHost) this.closeSession(alloc.instance);
      else this.#close(alloc);
    }
    return closed;
  }

  nextDeadline(): number {
    return this.#sweepAt;
  }

  handleTimeout(now: number): void {
    if (now < this.#sweepAt) return;
    for (const alloc of [...this.#byKey.values()]) {
      if (now >= alloc.lastActive + this.#limits.idleMs) this.#close(alloc);
    }
    this.#sweepAt = this.#byKey.size > 0 ? now + this.#limits.idleMs / 2 : Number.POSITIVE_INFINITY;
  }

  /** Closes everything (server shutdown). */
  clear(): void {
    for (const alloc of [...this.#byKey.values()]) this.#close(alloc);
    this.#sweepAt = Number.POSITIVE_INFINITY;
  }

  #side(m: RelayMember): Side {
    return {
      name: m.name,
      tokenKey: m.tokenKey,
      control: m.endpoint,
      isHost: m.isHost,
      id: this.#randomBytes(RELAY_ID_BYTES),
      bindToken: this.#randomBytes(RELAY_BIND_TOKEN_BYTES),
      bound: undefined,
      counter: -1,
    };
  }

  /** Why a new allocation for this pair of session `instance` is refused, if it is. */
  #refusal(
    instance: number,
    maxPlayers: number,
    first: RelayMember,
    second: RelayMember,
  ): RelayRefusal | undefined {
    if (this.#byKey.size >= this.#limits.maxAllocations) return 'full';
    const perSession =
      this.#limits.maxPerSession > 0 ? this.#limits.maxPerSession : lobbyPairs(maxPlayers);
    if (this.sessionCount(instance) >= perSession) return 'session_full';
    const a = sourceKey(first.endpoint.address);
    const b = sourceKey(second.endpoint.address);
    if ((this.#bySource.get(a) ?? 0) >= this.#maxPerSource) return 'source_full';
    if (b !== a && (this.#bySource.get(b) ?? 0) >= this.#maxPerSource) return 'source_full';
    return undefined;
  }

  #grant(alloc: Allocation, side: 0 | 1, requestId: number): void {
    const s = alloc.sides[side];
    const peer = alloc.sides[side === 0 ? 1 : 0];
    this.#outbox.send(
      s.control,
      encodeV2({
        type: 'relay_granted',
        requestId,
        peer: peer.name,
        port: alloc.port,
        id: s.id,
        bindToken: s.bindToken,
      }),
    );
  }

  /**
   * A `relay_bind` with a valid proof binds its side. A signed bind (revision 1: the proof is
   * the bind tag of its counter) with a counter greater than the last one taken binds the
   * side or moves it to this source: the member's NAT re-mapped it, or it binds again from
   * another socket. A bare bindToken (revision 0) binds an unbound side and is answered again
   * from the bound source, but never moves a bound side: anyone who saw it could replay it.
   */
  #bind(
    now: number,
    alloc: Allocation,
    from: Endpoint,
    id: Uint8Array,
    proof: Uint8Array,
    requestId: number,
  ): void {
    const side = alloc.sides.find((s) => sameSecret(s.id, id));
    if (side === undefined) {
      countRejection(this.#counters, 'relay_bad_bind');
      return;
    }
    const signed = sameSecret(relayBindProof(side.bindToken, requestId, id), proof);
    if (!signed && !sameSecret(side.bindToken, proof)) {
      countRejection(this.#counters, 'relay_bad_bind');
      return;
    }
    const same = side.bound !== undefined && sameEndpoint(side.bound, from);
    if (signed) {
      if (requestId <= side.counter) {
        // A bind seen before (a replay, or reordered): it proves nothing new.
        countRejection(this.#counters, 'relay_stale_bind');
        if (!same) return;
      } else {
        side.counter = requestId;
      }
    } else if (side.bound !== undefined && !same) {
      countRejection(this.#counters, 'relay_rebind_refused');
      return;
    }
    if (side.bound !== undefined && !same) countRejection(this.#counters, 'relay_rebind');
    if (!same) {
      // A refresh from the bound source keeps nothing open: only game traffic does.
      side.bound = from;
      alloc.lastActive = now;
      this.#lastActiveAt = now;
    }
    // 17 bytes in answer to 33: the relay answers no more than it was sent.
    this.#send(alloc.port, from, encodeV2({ type: 'relay_bound', requestId, id }));
  }

  #send(port: number, to: Endpoint, data: Uint8Array): void {
    this.#counters.datagramsOut++;
    this.#counters.bytesOut += data.length;
    this.#io.send(port, to, data);
  }

  /**
   * Token buckets of the allocation and of the whole relay (1 s of burst each): why the
   * datagram is over, or undefined when it may go (then both buckets are spent).
   */
  #spend(now: number, alloc: Allocation, bytes: number): RelayDrop | undefined {
    const l = this.#limits;
    const elapsed = Math.max(0, now - alloc.refilledAt) / 1000;
    alloc.refilledAt = now;
    alloc.bytes = Math.min(l.bytesPerSecond, alloc.bytes + elapsed * l.bytesPerSecond);
    alloc.packets = Math.min(l.packetsPerSecond, alloc.packets + elapsed * l.packetsPerSecond);
    if (alloc.packets < 1 || alloc.bytes < bytes) return 'pair_rate';
    const capPackets = Number.isFinite(l.totalPacketsPerSecond);
    const capBytes = Number.isFinite(l.totalBytesPerSecond);
    if (capPackets || capBytes) {
      const total = Math.min(1, Math.max(0, now - this.#totalRefilledAt) / 1000);
      this.#totalRefilledAt = now;
      if (capPackets) {
        const perS = l.totalPacketsPerSecond;
        this.#totalPackets = Math.min(perS, this.#totalPackets + total * perS);
        if (this.#totalPackets < 1) return 'server_rate';
      }
      if (capBytes) {
        const perS = l.totalBytesPerSecond;
        this.#totalBytes = Math.min(perS, this.#totalBytes + total * perS);
        if (this.#totalBytes < bytes) return 'server_rate';
      }
      if (capPackets) this.#totalPackets -= 1;
      if (capBytes) this.#totalBytes -= bytes;
    }
    alloc.packets -= 1;
    alloc.bytes -= bytes;
    return undefined;
  }

  #freePort(now: number): number | undefined {
    const { low, high } = this.#ports;
    const count = high - low + 1;
    for (let i = 0; i < count; i++) {
      const port = this.#cursor;
      this.#cursor = port >= high ? low : port + 1;
      if (this.#byPort.has(port)) continue;
      const failedUntil = this.#failedPorts.get(port);
      if (failedUntil !== undefined) {
        if (failedUntil > now) continue;
        this.#failedPorts.delete(port);
      }
      return port;
    }
    return undefined;
  }

  /** Counts `alloc` once (`delta` 1) or no more (-1) for each source among its sides. */
  #countSources(alloc: Allocation, delta: 1 | -1): void {
    if (delta === 1) {
      const a = sourceKey(alloc.sides[0].control.address);
      const b = sourceKey(alloc.sides[1].control.address);
      alloc.sources = a === b ? [a] : [a, b];
    }
    for (const k of alloc.sources) {
      const n = (this.#bySource.get(k) ?? 0) + delta;
      if (n <= 0) this.#bySource.delete(k);
      else this.#bySource.set(k, n);
    }
    if (delta === -1) alloc.sources = [];
  }

  #close(alloc: Allocation, portOpen = true): void {
    if (alloc.closed) return;
    alloc.closed = true;
    this.#byKey.delete(alloc.key);
    if (this.#byPort.get(alloc.port) === alloc) this.#byPort.delete(alloc.port);
    const set = this.#byInstance.get(alloc.instance);
    set?.delete(alloc);
    if (set?.size === 0) this.#byInstance.delete(alloc.instance);
    this.#countSources(alloc, -1);
    if (portOpen) this.#io.close(alloc.port);
  }
}
