/**
 * NAT models in RFC 4787 terms, as the simulator applies them to every datagram that
 * crosses a router between a LAN and the internet.
 */
import { type Endpoint, endpointKey } from '../protocol/index.js';

/**
 * The NAT behaviours the simulator models, and the names every other part of the project uses
 * for them: the NAT lab's list (src/natlab/nat-types.ts) extends this one, so a name means the
 * same behaviour in a simulation, a lab router and a report.
 */
export const NAT_TYPES = [
  /** No NAT at all: the host owns a public address. */
  'none',
  /** EIM + endpoint-independent filtering: anyone may send to a mapping. */
  'full-cone',
  /** EIM + address-dependent filtering: anyone at an address the host has sent to. */
  'address-restricted',
  /** EIM + address-and-port-dependent filtering: plain MASQUERADE (the common home router). */
  'port-restricted',
  /** Address-and-port-dependent mapping with random ports: MASQUERADE --random-fully. */
  'symmetric',
] as const;
export type NatType = (typeof NAT_TYPES)[number];

/** Lowest port a symmetric NAT hands out at random. */
export const SYMMETRIC_PORT_MIN = 1024;

interface Mapping {
  readonly internal: Endpoint;
  readonly publicPort: number;
  /** Remote addresses (restricted) or address#port keys (port-restricted, symmetric) we sent to. */
  readonly permitted: Set<string>;
}

export class SimNat {
  readonly type: Exclude<NatType, 'none'>;
  readonly publicAddress: string;
  readonly #random: () => number;
  readonly #byKey = new Map<string, Mapping>();
  readonly #byPort = new Map<number, Mapping>();

  constructor(type: Exclude<NatType, 'none'>, publicAddress: string, random: () => number) {
    this.type = type;
    this.publicAddress = publicAddress;
    this.#random = random;
  }

  /** Translates an outgoing datagram's source; records the permission for replies. */
  outbound(internal: Endpoint, to: Endpoint): Endpoint {
    // Endpoint-independent mapping for the cones; one mapping per destination for symmetric.
    const key =
      this.type === 'symmetric'
        ? `${endpointKey(internal)}>${endpointKey(to)}`
        : endpointKey(internal);
    let m = this.#byKey.get(key);
    if (m === undefined) {
      m = { internal, publicPort: this.#allocate(internal.port), permitted: new Set() };
      this.#byKey.set(key, m);
      this.#byPort.set(m.publicPort, m);
    }
    m.permitted.add(this.type === 'address-restricted' ? to.address : endpointKey(to));
    return { address: this.publicAddress, port: m.publicPort };
  }

  /** The internal endpoint an incoming datagram goes to, or undefined when it is filtered. */
  inbound(publicPort: number, from: Endpoint): Endpoint | undefined {
    const m = this.#byPort.get(publicPort);
    if (m === undefined) return undefined;
    switch (this.type) {
      case 'full-cone':
        return m.internal;
      case 'address-restricted':
        return m.permitted.has(from.address) ? m.internal : undefined;
      default:
        return m.permitted.has(endpointKey(from)) ? m.internal : undefined;
    }
  }

  #allocate(preferred: number): number {
    if (this.type === 'symmetric') {
      // Bounded: the port space is far larger than any simulation's mappings.
      for (let i = 0; i < 1000; i++) {
        const port = SYMMETRIC_PORT_MIN + Math.floor(this.#random() * (65536 - SYMMETRIC_PORT_MIN));
        if (!this.#byPort.has(port)) return port;
      }
    }
    // Cones keep the local port when it is free (as Linux MASQUERADE does).
    for (let i = 0; i < 65536; i++) {
      const port = ((preferred - 1 + i) % 65535) + 1;
      if (!this.#byPort.has(port)) return port;
    }
    throw new Error('NAT port space exhausted');
  }
}
