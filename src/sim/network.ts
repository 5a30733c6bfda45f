/**
 * An in-memory UDP network in virtual time: hosts on LANs behind NAT routers (or on the
 * internet directly), one-way delay and seeded random loss per datagram. It drives
 * sans-IO cores (anything with `nextDeadline`/`handleTimeout`) without real sockets or
 * clocks, deterministically from a seed.
 */
import type { Endpoint } from '../protocol/index.js';
import { type NatType, SimNat } from './nat.js';
import { seededRandom } from './random.js';

export interface SimNetworkOptions {
  /** Delay of every datagram from sender to receiver (one way), in virtual ms. */
  readonly oneWayDelayMs?: number;
  /** Probability that any single datagram is lost, 0..1. */
  readonly lossRate?: number;
  readonly seed?: number;
  /** Called for every datagram sent, with its fate (for debugging a run). */
  readonly trace?: (event: SimTraceEvent) => void;
}

export interface SimTraceEvent {
  readonly at: number;
  readonly from: Endpoint;
  readonly to: Endpoint;
  readonly data: Uint8Array;
  readonly fate: 'lost' | 'filtered' | 'unroutable' | 'sent';
}

/** A sans-IO core the network wakes up at its deadlines. */
export interface SimAgent {
  nextDeadline(): number;
  handleTimeout(now: number): void;
}

export type SimReceive = (now: number, from: Endpoint, data: Uint8Array) => void;

export interface SimSocket {
  /** The socket's own (private, for hosts behind a NAT) address and port. */
  readonly local: Endpoint;
  send(to: Endpoint, data: Uint8Array): void;
}

interface Host {
  readonly address: string;
  readonly nat: SimNat | undefined;
  readonly sockets: Map<number, SimReceive>;
}

interface Delivery {
  readonly at: number;
  readonly seq: number;
  readonly to: Host;
  readonly toPort: number;
  readonly from: Endpoint;
  readonly data: Uint8Array;
}

/** Bound on simulation steps, so a core that asks to be woken forever cannot hang a test. */
export const MAX_SIM_STEPS = 2_000_000;

export class SimNetwork {
  readonly oneWayDelayMs: number;
  readonly lossRate: number;
  readonly #random: () => number;
  readonly #trace: ((event: SimTraceEvent) => void) | undefined;
  readonly #hosts = new Map<string, Host>();
  readonly #nats = new Map<string, SimNat>();
  readonly #agents: SimAgent[] = [];
  #queue: Delivery[] = [];
  #seq = 0;
  #now = 0;
  #lans = 0;
  /** Totals for reports and tests. */
  readonly stats = { sent: 0, lost: 0, filtered: 0, unroutable: 0, delivered: 0 };

  constructor(options: SimNetworkOptions = {}) {
    this.oneWayDelayMs = options.oneWayDelayMs ?? 20;
    this.lossRate = options.lossRate ?? 0;
    this.#random = seededRandom(options.seed ?? 1);
    this.#trace = options.trace;
  }

  get now(): number {
    return this.#now;
  }

  /** A router with a public address (198.51.100.x) and the given NAT behaviour. */
  addNat(type: Exclude<NatType, 'none'>): SimNat {
    this.#lans++;
    const nat = new SimNat(
      type,
      `198.51.100.${this.#lans}`,
      seededRandom(this.#random() * 2 ** 32),
    );
    this.#nats.set(nat.publicAddress, nat);
    return nat;
  }

  /**
   * A host: behind `nat` (a private 10.x address on that router's LAN) or, without one,
   * directly on the internet (a 203.0.113.x address).
   */
  addHost(nat?: SimNat, address?: string): string {
    const n = this.#hosts.size + 1;
    const addr =
      address ??
      (nat ? `10.${Number(nat.publicAddress.split('.')[3])}.0.${n + 1}` : `203.0.113.${n}`);
    this.#hosts.set(addr, { address: addr, nat, sockets: new Map() });
    return addr;
  }

  /**
   * Binds `port` on `address` (a host added before), or a free ephemeral port for 0;
   * `receive` gets every datagram. Undefined when the port is taken (as EADDRINUSE).
   */
  bind(address: string, port: number, receive: SimReceive): SimSocket {
    const socket = this.tryBind(address, port, receive);
    if (socket === undefined) throw new Error(`${address}:${port} is taken`);
    return socket;
  }

  tryBind(address: string, port: number, receive: SimReceive): SimSocket | undefined {
    const host = this.#hosts.get(address);
    if (host === undefined) throw new Error(`no host ${address}`);
    const chosen = port === 0 ? ephemeralPort(host) : port;
    if (chosen === undefined || host.sockets.has(chosen)) return undefined;
    host.sockets.set(chosen, receive);
    const local = { address, port: chosen };
    return { local, send: (to, data) => this.#send(host, local, to, data) };
  }

  /** Closes a socket: datagrams to it are dropped as unroutable from now on. */
  unbind(local: Endpoint): void {
    this.#hosts.get(local.address)?.sockets.delete(local.port);
  }

  addAgent(agent: SimAgent): void {
    this.#agents.push(agent);
  }

  #send(host: Host, local: Endpoint, to: Endpoint, data: Uint8Array): void {
    this.stats.sent++;
    if (this.lossRate > 0 && this.#random() < this.lossRate) {
      this.stats.lost++;
      this.#trace?.({ at: this.#now, from: local, to, data, fate: 'lost' });
      return;
    }
    let from = local;
    let target: Host | undefined;
    let targetPort = to.port;
    const direct = this.#hosts.get(to.address);
    if (direct !== undefined) {
      // A private address is reachable only from its own LAN; public hosts from anywhere.
      if (direct.nat !== undefined && direct.nat !== host.nat) {
        this.stats.unroutable++;
        this.#trace?.({ at: this.#now, from: local, to, data, fate: 'unroutable' });
        return;
      }
      if (direct.nat === undefined && host.nat !== undefined) {
        from = host.nat.outbound(local, to);
      }
      target = direct;
    } else {
      const nat = this.#nats.get(to.address);
      // No hairpinning: a datagram to one's own router's public address is dropped.
      if (nat === undefined || nat === host.nat) {
        this.stats.unroutable++;
        this.#trace?.({ at: this.#now, from: local, to, data, fate: 'unroutable' });
        return;
      }
      if (host.nat !== undefined) from = host.nat.outbound(local, to);
      const internal = nat.inbound(to.port, from);
      if (internal === undefined) {
        this.stats.filtered++;
        this.#trace?.({ at: this.#now, from: local, to, data, fate: 'filtered' });
        return;
      }
      target = this.#hosts.get(internal.address);
      targetPort = internal.port;
    }
    if (target === undefined) {
      this.stats.unroutable++;
      return;
    }
    this.#trace?.({ at: this.#now, from: local, to, data, fate: 'sent' });
    // Same-LAN traffic crosses no WAN link; it still takes the configured delay (simple).
    this.#push({
      at: this.#now + this.oneWayDelayMs,
      seq: this.#seq++,
      to: target,
      toPort: targetPort,
      from,
      data,
    });
  }

  /**
   * Runs until `done()` is true or virtual time passes `untilMs`; returns the virtual time.
   * Deliveries at equal times go in send order; cores are woken at their deadlines.
   */
  run(untilMs: number, done: () => boolean = () => false): number {
    for (let step = 0; step < MAX_SIM_STEPS; step++) {
      if (done()) return this.#now;
      const nextDelivery = this.#queue[0]?.at ?? Number.POSITIVE_INFINITY;
      let nextTimer = Number.POSITIVE_INFINITY;
      for (const a of this.#agents) nextTimer = Math.min(nextTimer, a.nextDeadline());
      const next = Math.min(nextDelivery, nextTimer);
      if (next > untilMs) {
        this.#now = untilMs;
        return this.#now;
      }
      this.#now = Math.max(this.#now, next);
      if (nextDelivery <= nextTimer) {
        const d = this.#pop();
        if (d === undefined) continue;
        const receive = d.to.sockets.get(d.toPort);
        if (receive === undefined) {
          this.stats.unroutable++;
          continue;
        }
        this.stats.delivered++;
        receive(this.#now, d.from, d.data);
      } else {
        for (const a of this.#agents) {
          if (a.nextDeadline() <= this.#now) a.handleTimeout(this.#now);
        }
      }
    }
    return this.#now;
  }

  #push(d: Delivery): void {
    const q = this.#queue;
    q.push(d);
    let i = q.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(q[i] as Delivery, q[parent] as Delivery)) break;
      [q[i], q[parent]] = [q[parent] as Delivery, q[i] as Delivery];
      i = parent;
    }
  }

  #pop(): Delivery | undefined {
    const q = this.#queue;
    const top = q[0];
    const last = q.pop();
    if (q.length > 0 && last !== undefined) {
      q[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < q.length && before(q[l] as Delivery, q[m] as Delivery)) m = l;
        if (r < q.length && before(q[r] as Delivery, q[m] as Delivery)) m = r;
        if (m === i) break;
        [q[i], q[m]] = [q[m] as Delivery, q[i] as Delivery];
        i = m;
      }
    }
    return top;
  }
}

/** Linux's default ephemeral range, lowest free port first (deterministic). */
const EPHEMERAL_LOW = 32_768;
const EPHEMERAL_HIGH = 60_999;

function ephemeralPort(host: Host): number | undefined {
  for (let port = EPHEMERAL_LOW; port <= EPHEMERAL_HIGH; port++) {
    if (!host.sockets.has(port)) return port;
  }
  return undefined;
}

function before(a: Delivery, b: Delivery): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
