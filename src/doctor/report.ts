/**
 * From what the diagnosis saw to RFC 4787 terms and a verdict in plain words. Pure.
 */
import type { Endpoint } from '../protocol/index.js';

/** RFC 4787 mapping and filtering behaviours. */
export const NAT_BEHAVIOURS = [
  'endpoint-independent',
  'address-dependent',
  'address-and-port-dependent',
] as const;
export type NatBehaviour = (typeof NAT_BEHAVIOURS)[number];

/**
 * How the NAT picks public ports: the local port kept (`preserved`), the next ones in turn
 * (`sequential`: a peer can predict them), or anything (`random`).
 */
export type PortAllocation = 'preserved' | 'sequential' | 'random';

/** Largest step between two mappings made one after another that still counts as "next". */
export const SEQUENTIAL_MAX_STEP = 16;

/** What the tests saw (see `NatDiagnosis`). */
export interface Observation {
  readonly server: Endpoint;
  readonly localPorts: readonly number[];
  /** Each socket's mapping as the server's main address and port saw it (send order). */
  readonly base: readonly (Endpoint | undefined)[];
  readonly altAddress: string;
  readonly altPort: number;
  /** Socket 0's mapping as seen at the alternate address, port, and both. */
  readonly viaAltAddress: Endpoint | undefined;
  readonly viaAltPort: Endpoint | undefined;
  readonly viaAltBoth: Endpoint | undefined;
  /** Whether socket 1 heard the answers sent from the alternate port / address and port. */
  readonly heardFromAltPort: boolean | undefined;
  readonly heardFromAltBoth: boolean | undefined;
  readonly hairpin: boolean | undefined;
}

export interface NatReport {
  /** The server the tests ran against. */
  readonly server: Endpoint;
  /** False when the server never answered: nothing else is known. */
  readonly reachable: boolean;
  /** The public addresses the server saw (more than one: the NAT uses an address pool). */
  readonly publicAddresses: readonly string[];
  readonly mapping: NatBehaviour | null;
  readonly filtering: NatBehaviour | null;
  readonly ports: PortAllocation | null;
  readonly hairpin: boolean | null;
  /** Local and public port of each test socket (what `ports` was read from). */
  readonly portSamples: readonly { readonly local: number; readonly public: number }[];
  /** The tests that could not run or decide, and why, in words. */
  readonly untested: readonly string[];
  /** What it means for a game, in words. */
  readonly verdict: string;
}

const same = (a: Endpoint | undefined, b: Endpoint | undefined) =>
  a !== undefined && b !== undefined && a.address === b.address && a.port === b.port;

export function classify(o: Observation): NatReport {
  const untested: string[] = [];
  const first = o.base[0];
  const samples = o.base.flatMap((m, i) =>
    m === undefined ? [] : [{ local: o.localPorts[i] as number, public: m.port }],
  );
  if (first === undefined) {
    return {
      server: o.server,
      reachable: false,
      publicAddresses: [],
      mapping: null,
      filtering: null,
      ports: null,
      hairpin: null,
      portSamples: samples,
      untested: ['every test: the server never answered'],
      verdict: `the server ${o.server.address}:${o.server.port} did not answer: check the address, that it runs, and that its UDP port is open`,
    };
  }
  const publicAddresses = [
    ...new Set(
      [...o.base, o.viaAltAddress, o.viaAltPort, o.viaAltBoth]
        .filter((m): m is Endpoint => m !== undefined)
        .map((m) => m.address),
    ),
  ];

  let mapping: NatBehaviour | null = null;
  if (o.altAddress === '' && o.altPort === 0) {
    untested.push(
      'mapping: the server has no alternate address or port (--alt-address, --alt-port)',
    );
  } else if (o.altAddress !== '') {
    if (o.viaAltAddress === undefined) {
      untested.push('mapping: no answer from the alternate address');
    } else if (
      same(o.viaAltAddress, first) &&
      (o.viaAltPort === undefined || same(o.viaAltPort, first))
    ) {
      mapping = 'endpoint-independent';
    } else if (o.altPort === 0) {
      mapping = 'address-and-port-dependent';
      untested.push(
        'mapping: address- and address-and-port-dependent look alike without --alt-port',
      );
    } else if (o.viaAltBoth === undefined) {
      untested.push('mapping: no answer from the alternate address and port');
    } else {
      mapping = same(o.viaAltBoth, o.viaAltAddress)
        ? 'address-dependent'
        : 'address-and-port-dependent';
    }
  } else if (o.viaAltPort === undefined) {
    untested.push('mapping: no answer from the alternate port');
  } else {
    mapping = same(o.viaAltPort, first) ? 'endpoint-independent' : 'address-and-port-dependent';
    if (mapping === 'endpoint-independent') {
      untested.push(
        'mapping: endpoint-independent and address-dependent look alike without --alt-address',
      );
    }
  }

  let filtering: NatBehaviour | null = null;
  if (o.altPort === 0) {
    untested.push('filtering: the server has no alternate port (--alt-port)');
  } else if (o.heardFromAltBoth === true) {
    filtering = 'endpoint-independent';
  } else if (o.heardFromAltPort === true) {
    filtering = 'address-dependent';
    if (o.altAddress === '') {
      untested.push(
        'filtering: endpoint-independent and address-dependent look alike without --alt-address',
      );
    }
  } else if (o.heardFromAltPort === false) {
    filtering = 'address-and-port-dependent';
  }

  const ports = portAllocation(o);
  const hairpin = o.hairpin ?? null;
  if (hairpin === null) untested.push('hairpinning: two mappings were needed');

  return {
    server: o.server,
    reachable: true,
    publicAddresses,
    mapping,
    filtering,
    ports,
    hairpin,
    portSamples: samples,
    untested,
    verdict: verdictOf(mapping, ports),
  };
}

function portAllocation(o: Observation): PortAllocation | null {
  const pairs = o.base.flatMap((m, i) =>
    m === undefined ? [] : [{ local: o.localPorts[i] as number, public: m.port }],
  );
  if (pairs.length < 2) return null;
  if (pairs.every((p) => p.local === p.public)) return 'preserved';
  // Mappings made one after another (send order) land on the next ports: predictable.
  for (let i = 1; i < pairs.length; i++) {
    const step =
      (pairs[i] as { public: number }).public - (pairs[i - 1] as { public: number }).public;
    if (step < 1 || step > SEQUENTIAL_MAX_STEP) return 'random';
  }
  return 'sequential';
}

function verdictOf(mapping: NatBehaviour | null, ports: PortAllocation | null): string {
  if (mapping === 'endpoint-independent') {
    return 'direct connections will work with most players';
  }
  if (mapping === null) {
    return ports === 'random'
      ? 'your NAT may be strict (random ports); run against a server with an alternate port (the default; not --no-alt-port) to know'
      : 'direct connections will likely work with most players (mapping not tested)';
  }
  if (ports === 'sequential' || ports === 'preserved') {
    return 'direct connections work with most players by predicting your next port; players behind strict NATs will need the relay';
  }
  return 'you will need the relay with players behind strict NATs: your NAT gives every destination a new random port';
}
