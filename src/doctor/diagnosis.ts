/**
 * NAT diagnosis as a sans-IO state machine: the RFC 5780 behaviour discovery tests (mapping,
 * filtering), port allocation and hairpinning, run against a HolePunch server's `probe`
 * support (docs/protocol-v2.md, "NAT diagnosis"). Time and datagrams come in, datagrams to
 * send (on which of its local sockets) go out through `poll()`; the shell owns the sockets.
 *
 * Sockets, by index (each its own NAT mapping):
 * - 0: mapping tests: the main server address and port, then the alternate address, port and
 *   both; its mapping is what the others hairpin to;
 * - 1: filtering tests: talks to the main address and port only, then asks for replies from
 *   the alternate port and from the alternate address and port, which its NAT filters or not;
 * - 2..5: one probe each, sent right after socket 0's and 1's: how the NAT allocates ports.
 */
import type { Endpoint } from '../protocol/index.js';
import {
  decodeV2,
  encodeHairpinProbe,
  encodeV2,
  hasV2Prefix,
  isHairpinProbe,
} from '../protocol/index.js';
import { classify, type NatReport, type Observation } from './report.js';

export const DIAGNOSIS_SOCKETS = 6;
/** A probe is re-sent this often until answered... */
export const PROBE_RETRY_MS = 200;
/** ...and given up this long after its first send (a filtered reply never comes). */
export const PROBE_GIVE_UP_MS = 1_600;
/** Hairpin datagrams: one socket sends to another's public mapping, this many times. */
export const HAIRPIN_TRIES = 6;

export interface DiagnosisOptions {
  /** The server's main address (an IP literal) and port. */
  readonly server: Endpoint;
  /** The local port of each socket, by index (`DIAGNOSIS_SOCKETS` of them). */
  readonly localPorts: readonly number[];
  /** For request ids and the hairpin nonce. */
  readonly random: () => number;
}

/** One datagram to send from local socket `socket`. */
export interface DiagnosisTransmit {
  readonly socket: number;
  readonly to: Endpoint;
  readonly data: Uint8Array;
}

type Purpose =
  | 'base'
  | 'mapping-alt-address'
  | 'mapping-alt-port'
  | 'mapping-alt-both'
  | 'filter-change-port'
  | 'filter-change-both';

interface Probe {
  readonly id: number;
  readonly purpose: Purpose;
  readonly socket: number;
  readonly to: Endpoint;
  readonly data: Uint8Array;
  readonly firstAt: number;
  nextAt: number;
  done: boolean;
  /** What the server saw, and where the answer came from. */
  reply: { readonly observed: Endpoint; readonly from: Endpoint } | undefined;
}

export class NatDiagnosis {
  readonly #o: DiagnosisOptions;
  readonly #probes: Probe[] = [];
  readonly #out: DiagnosisTransmit[] = [];
  #alt: { address: string; port: number } | undefined;
  readonly #nonce: string;
  #hairpinStarted = false;
  #mappingStarted = false;
  #hairpinSent = 0;
  #hairpinNextAt = Number.POSITIVE_INFINITY;
  #hairpinHeard = false;
  #started = false;

  constructor(options: DiagnosisOptions) {
    if (options.localPorts.length !== DIAGNOSIS_SOCKETS) {
      throw new RangeError(`a diagnosis needs ${DIAGNOSIS_SOCKETS} sockets`);
    }
    this.#o = options;
    this.#nonce = Math.floor(options.random() * 2 ** 48).toString(36);
  }

  start(now: number): void {
    if (this.#started) return;
    this.#started = true;
    // Socket order is send order: the port allocation test reads the mappings in this order.
    for (let socket = 0; socket < DIAGNOSIS_SOCKETS; socket++) {
      this.#probe(now, 'base', socket, this.#o.server, false, false);
    }
  }

  /** A datagram that arrived on local socket `socket`. */
  handle(now: number, socket: number, from: Endpoint, data: Uint8Array): void {
    if (isHairpinProbe(data, this.#nonce)) {
      this.#hairpinHeard = true;
      return;
    }
    if (!hasV2Prefix(data)) return;
    const decoded = decodeV2(data);
    if (!decoded.ok || decoded.msg.type !== 'probe_reply') return;
    const msg = decoded.msg;
    const probe = this.#probes.find((p) => p.id === msg.requestId && p.socket === socket);
    if (probe === undefined || probe.reply !== undefined) return;
    // Only the socket of the server the test asked for may answer it: a reply from anywhere
    // else (a forger, or a server answering from the wrong socket) would fake a behaviour.
    const expected = this.#answerFrom(probe);
    if (expected === undefined || expected.address !== from.address || expected.port !== from.port)
      return;
    probe.reply = { observed: msg.observed, from };
    probe.done = true;
    if (probe.purpose !== 'base') {
      this.#maybeStartMappingTests(now);
      return;
    }
    if (this.#alt === undefined) {
      this.#alt = { address: msg.altAddress, port: msg.altPort };
    }
    if (socket === 1) this.#startFilteringTests(now);
    this.#maybeStartMappingTests(now);
    if (!this.#hairpinStarted && this.#base(0)?.reply && this.#base(2)?.reply) {
      this.#hairpinStarted = true;
      this.#hairpinNextAt = now;
    }
  }

  nextDeadline(): number {
    let next = this.#hairpinNextAt;
    for (const p of this.#probes) if (!p.done) next = Math.min(next, p.nextAt);
    return next;
  }

  handleTimeout(now: number): void {
    for (const p of this.#probes) {
      if (p.done || now < p.nextAt) continue;
      if (now - p.firstAt >= PROBE_GIVE_UP_MS) {
        p.done = true;
        continue;
      }
      this.#out.push({ socket: p.socket, to: p.to, data: p.data });
      p.nextAt = now + PROBE_RETRY_MS;
    }
    // A filtered answer never comes: the mapping tests wait for it to be given up.
    this.#maybeStartMappingTests(now);
    if (now >= this.#hairpinNextAt) this.#sendHairpins(now);
  }

  /** The datagrams to send, in order; each call drains them. */
  poll(): DiagnosisTransmit[] {
    return this.#out.splice(0, this.#out.length);
  }

  /** Every test has an answer or gave up. */
  get done(): boolean {
    return (
      this.#started &&
      this.#probes.every((p) => p.done) &&
      this.#hairpinNextAt === Number.POSITIVE_INFINITY
    );
  }

  /** What the tests show so far (complete once `done`). */
  report(): NatReport {
    return classify(this.#observation());
  }

  #observation(): Observation {
    const mapped = (purpose: Purpose) =>
      this.#probes.find((p) => p.purpose === purpose)?.reply?.observed;
    const answered = (purpose: Purpose): boolean | undefined => {
      const p = this.#probes.find((x) => x.purpose === purpose);
      return p === undefined ? undefined : p.reply !== undefined;
    };
    const base = Array.from(
      { length: DIAGNOSIS_SOCKETS },
      (_, i) => this.#base(i)?.reply?.observed,
    );
    const hairpinTested = this.#hairpinStarted;
    return {
      server: this.#o.server,
      localPorts: this.#o.localPorts,
      base,
      altAddress: this.#alt?.address ?? '',
      altPort: this.#alt?.port ?? 0,
      viaAltAddress: mapped('mapping-alt-address'),
      viaAltPort: mapped('mapping-alt-port'),
      viaAltBoth: mapped('mapping-alt-both'),
      heardFromAltPort: answered('filter-change-port'),
      heardFromAltBoth: answered('filter-change-both'),
      hairpin: hairpinTested ? this.#hairpinHeard : undefined,
    };
  }

  /** Where the answer to `probe` must come from. */
  #answerFrom(probe: Probe): Endpoint | undefined {
    const alt = this.#alt;
    switch (probe.purpose) {
      case 'base':
      case 'mapping-alt-address':
      case 'mapping-alt-port':
      case 'mapping-alt-both':
        return probe.to;
      case 'filter-change-port':
        return alt === undefined ? undefined : { address: probe.to.address, port: alt.port };
      case 'filter-change-both':
        return alt === undefined ? undefined : { address: alt.address, port: alt.port };
    }
  }

  #base(socket: number): Probe | undefined {
    return this.#probes.find((p) => p.purpose === 'base' && p.socket === socket);
  }

  /**
   * Socket 0 contacts the alternate address only once the filtering tests are over: some NATs
   * (and the lab's address-restricted router) open their filter to an address for every
   * mapping once any of them has sent to it, which would read as endpoint-independent
   * filtering.
   */
  #maybeStartMappingTests(now: number): void {
    const alt = this.#alt;
    if (alt === undefined || this.#mappingStarted || this.#base(0)?.reply === undefined) return;
    const filtering = this.#probes.filter((p) => p.purpose.startsWith('filter-'));
    const filteringReady = this.#base(1)?.done === true && filtering.every((p) => p.done);
    if (!filteringReady) return;
    this.#mappingStarted = true;
    const main = this.#o.server;
    if (alt.address !== '') {
      this.#probe(now, 'mapping-alt-address', 0, { address: alt.address, port: main.port });
    }
    if (alt.port !== 0) {
      this.#probe(now, 'mapping-alt-port', 0, { address: main.address, port: alt.port });
    }
    if (alt.address !== '' && alt.port !== 0) {
      this.#probe(now, 'mapping-alt-both', 0, { address: alt.address, port: alt.port });
    }
  }

  #startFilteringTests(now: number): void {
    const alt = this.#alt;
    if (alt === undefined || alt.port === 0) return;
    const main = this.#o.server;
    this.#probe(now, 'filter-change-port', 1, main, false, true);
    if (alt.address !== '') this.#probe(now, 'filter-change-both', 1, main, true, true);
  }

  #probe(
    now: number,
    purpose: Purpose,
    socket: number,
    to: Endpoint,
    changeAddress = false,
    changePort = false,
  ): void {
    let id = 0;
    while (id === 0 || this.#probes.some((p) => p.id === id)) {
      id = 1 + Math.floor(this.#o.random() * 0xfffffffe);
    }
    const data = encodeV2({ type: 'probe', requestId: id, changeAddress, changePort });
    this.#probes.push({
      id,
      purpose,
      socket,
      to,
      data,
      firstAt: now,
      nextAt: now + PROBE_RETRY_MS,
      done: false,
      reply: undefined,
    });
    this.#out.push({ socket, to, data });
  }

  /**
   * Sockets 0 and 2 send to each other's public mapping: one of them getting through shows
   * that the NAT hairpins. Both directions, so that neither waits on a filter the other has
   * not opened yet.
   */
  #sendHairpins(now: number): void {
    const a = this.#base(0)?.reply?.observed;
    const b = this.#base(2)?.reply?.observed;
    if (this.#hairpinHeard || this.#hairpinSent >= HAIRPIN_TRIES || !a || !b) {
      this.#hairpinNextAt = Number.POSITIVE_INFINITY;
      return;
    }
    const data = encodeHairpinProbe(this.#nonce);
    this.#out.push({ socket: 0, to: b, data }, { socket: 2, to: a, data });
    this.#hairpinSent++;
    this.#hairpinNextAt = now + PROBE_RETRY_MS;
  }
}
