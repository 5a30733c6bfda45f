/**
 * The NAT behaviours the lab can give a site, in RFC 4787 terms, and the router rules that
 * make Linux behave that way. Linux gives endpoint-independent mapping (MASQUERADE keeps the
 * source port while it is free) with address-and-port-dependent filtering (conntrack) out of
 * the box; every other behaviour needs extra rules, written out here.
 */
import { NAT_TYPES as SIM_NAT_TYPES } from '../sim/index.js';

export const NAT_TYPES = [
  // The simulator's behaviours first, defined (and explained) there once.
  ...SIM_NAT_TYPES,
  /**
   * A port-restricted router that accepts unsolicited inbound to its own address: the
   * conntrack entry this leaves makes MASQUERADE move the host to another public port when it
   * later sends to the same remote endpoint (RFC 4787 section 4.1, port collision).
   */
  'port-restricted-accepting',
  /**
   * Address-and-port-dependent mapping with sequential ports: every new flow gets the next
   * public port in turn (round-robin SNAT), so a peer can predict it (RFC 4787 section 4.2.2).
   */
  'symmetric-sequential',
  /**
   * A port-restricted router whose mappings expire after `FAST_EXPIRY_S` of silence (the
   * conntrack UDP timeouts of its namespace), as aggressive carrier and mobile NATs do.
   */
  'fast-expiry',
  /**
   * A home router (port-restricted) behind a carrier-grade NAT (port-restricted too): the
   * host's traffic is translated twice, as behind most mobile and many fixed-line ISPs.
   */
  'double-nat',
] as const;

/** The types the NAT lab matrix runs by default (the newer ones through `--types`). */
export const MATRIX_NAT_TYPES: readonly NatType[] = [
  'none',
  'full-cone',
  'address-restricted',
  'port-restricted',
  'symmetric',
  'port-restricted-accepting',
];

/** Seconds of silence after which a `fast-expiry` router forgets a mapping. */
export const FAST_EXPIRY_S = 10;
/** Public ports a `symmetric-sequential` router hands out in turn, from `SEQUENTIAL_BASE_PORT`. */
export const SEQUENTIAL_PORTS = 64;
export const SEQUENTIAL_BASE_PORT = 40_000;

export type NatType = (typeof NAT_TYPES)[number];

export function isNatType(value: string): value is NatType {
  return (NAT_TYPES as readonly string[]).includes(value);
}

export type Mapping = 'endpoint-independent' | 'address-and-port-dependent';
export type Filtering = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';

/** What the probe must observe for a NAT type; the lab refuses a router that differs. */
export interface NatBehaviour {
  readonly mapping: Mapping;
  readonly filtering: Filtering;
  /** How public ports are chosen (what `holepunch-client doctor` must report). */
  readonly ports: 'preserved' | 'sequential' | 'random';
  /** The public port equals the local port (true for every EIM type here while ports are free). */
  readonly keepsPort: boolean;
  /** Unsolicited inbound to the router's address moves the host's later mapping. */
  readonly remapsOnCollision: boolean;
}

export const NAT_BEHAVIOUR: Readonly<Record<NatType, NatBehaviour>> = {
  none: {
    mapping: 'endpoint-independent',
    filtering: 'endpoint-independent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: false,
  },
  'full-cone': {
    mapping: 'endpoint-independent',
    filtering: 'endpoint-independent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: false,
  },
  'address-restricted': {
    mapping: 'endpoint-independent',
    filtering: 'address-dependent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: false,
  },
  'port-restricted': {
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: false,
  },
  symmetric: {
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    ports: 'random',
    keepsPort: false,
    remapsOnCollision: false,
  },
  'symmetric-sequential': {
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    ports: 'sequential',
    keepsPort: false,
    remapsOnCollision: false,
  },
  'fast-expiry': {
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: false,
  },
  // Two endpoint-independent, port-keeping NATs in a row are one, as seen from outside.
  'double-nat': {
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: false,
  },
  'port-restricted-accepting': {
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    ports: 'preserved',
    keepsPort: true,
    remapsOnCollision: true,
  },
};

/**
 * Whether two sites can get a direct path by RFC 4787 behaviours alone (no relay):
 * - 'direct': must always work;
 * - 'relay-only': cannot work without a relay (a random-port mapping meets a filter that
 *   wants the exact port back), the client must fail fast with `punch_failed`;
 * - 'racy': works or not depending on which packet reaches the collision-prone router first.
 */
export type PairExpectation = 'direct' | 'relay-only' | 'racy';

export function expectPair(a: NatType, b: NatType): PairExpectation {
  const ba = NAT_BEHAVIOUR[a];
  const bb = NAT_BEHAVIOUR[b];
  const aRandom = ba.mapping !== 'endpoint-independent';
  const bRandom = bb.mapping !== 'endpoint-independent';
  if (aRandom && bRandom) return 'relay-only';
  // Against an exact-port filter, a per-destination mapping must be guessed: only sequential
  // ports can be (port prediction), and only if nothing else takes the next port first.
  if (aRandom && bb.filtering === 'address-and-port-dependent')
    return ba.ports === 'sequential' ? 'racy' : 'relay-only';
  if (bRandom && ba.filtering === 'address-and-port-dependent')
    return bb.ports === 'sequential' ? 'racy' : 'relay-only';
  // A collision moves the accepting side's port; only a peer that filters by address at
  // most still accepts the moved port, and only if it answers the port it saw.
  const aMoves = ba.remapsOnCollision && bb.filtering === 'address-and-port-dependent';
  const bMoves = bb.remapsOnCollision && ba.filtering === 'address-and-port-dependent';
  if (aMoves || bMoves) return 'racy';
  return 'direct';
}

/** Inputs for one router's rule set. */
export interface RouterRules {
  readonly type: NatType;
  readonly lanCidr: string;
  readonly publicAddress: string;
  /** Private addresses of the site's hosts, the first one is the "DMZ" host for cone types. */
  readonly hosts: readonly {
    readonly address: string;
    readonly portRange: readonly [number, number];
  }[];
  readonly hairpin: boolean;
}

/** The xt_recent list that remembers contacted addresses (address-restricted filtering). */
export const CONTACTED_LIST = 'hp_contacted';

/**
 * The router's complete rule set as `iptables-restore` input: one atomic load per router.
 * `wan` is the uplink, `lan` the bridge to the hosts.
 */
export function routerRuleset(rules: RouterRules): string {
  const first = rules.hosts[0];
  if (first === undefined) throw new Error('a NAT site needs at least one host');
  const nat: string[] = [];
  const filter: string[] = [];
  // Cone types forward new inbound flows to the (single) host on the same port: with EIM and
  // kept ports, the port a peer learnt from the server is the host's own port.
  if (rules.type === 'full-cone') {
    nat.push(`-A PREROUTING -i wan -p udp -j DNAT --to-destination ${first.address}`);
  }
  if (rules.type === 'address-restricted') {
    filter.push(`-A FORWARD -i lan -o wan -m recent --name ${CONTACTED_LIST} --rdest --set`);
    nat.push(
      `-A PREROUTING -i wan -p udp -m recent --name ${CONTACTED_LIST} --rcheck --rsource -j DNAT --to-destination ${first.address}`,
    );
  }
  if (rules.hairpin) {
    // Each host's ephemeral ports come from its own range, and ports are kept, so the public
    // port tells which host a hairpinned packet is for.
    for (const host of rules.hosts) {
      nat.push(
        `-A PREROUTING -i lan -d ${rules.publicAddress}/32 -p udp --dport ${host.portRange[0]}:${host.portRange[1]} -j DNAT --to-destination ${host.address}`,
      );
    }
    nat.push(`-A POSTROUTING -s ${rules.lanCidr} -d ${rules.lanCidr} -j MASQUERADE`);
  }
  if (rules.type === 'symmetric-sequential') {
    // Round robin over the new UDP flows (only a flow's first packet sees the nat table): the
    // k-th rule takes every (N-k)-th of what the ones before it left, so flow i gets port i mod N.
    for (let k = 0; k < SEQUENTIAL_PORTS; k++) {
      nat.push(
        `-A POSTROUTING -o wan -p udp -m statistic --mode nth --every ${SEQUENTIAL_PORTS - k} --packet 0 -j SNAT --to-source ${rules.publicAddress}:${SEQUENTIAL_BASE_PORT + k}`,
      );
    }
  }
  nat.push(
    `-A POSTROUTING -o wan -j MASQUERADE${rules.type === 'symmetric' ? ' --random-fully' : ''}`,
  );

  const input = [
    '-A INPUT -i lo -j ACCEPT',
    '-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A INPUT -i lan -j ACCEPT',
  ];
  // A home router drops what nobody asked for; the accepting variant lets conntrack see it.
  if (rules.type !== 'port-restricted-accepting') input.push('-A INPUT -i wan -j DROP');
  filter.push(
    '-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED,DNAT -j ACCEPT',
    '-A FORWARD -i lan -j ACCEPT',
  );
  return [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ...nat,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ...input,
    ...filter,
    'COMMIT',
    '',
  ].join('\n');
}

/**
 * The carrier-grade NAT in front of a `double-nat` site's home router: plain `MASQUERADE` of
 * everything from its inside link (`inside`) to the public side (`wan`), replies only.
 */
export function carrierRuleset(): string {
  return [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    '-A POSTROUTING -o wan -j MASQUERADE',
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A INPUT -i lo -j ACCEPT',
    '-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A INPUT -i wan -j DROP',
    '-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A FORWARD -i inside -o wan -j ACCEPT',
    'COMMIT',
    '',
  ].join('\n');
}

/**
 * Loss rules for an uplink in both directions: inbound is dropped before conntrack sees it
 * (raw), outbound before NAT creates a mapping for it (mangle POSTROUTING runs before SNAT).
 * The kernel here has no sch_netem, so there is no delay or jitter.
 */
export function lossRuleset(probability: number): string {
  const lines = ['*raw', ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
  if (probability > 0) {
    lines.push(
      `-A PREROUTING -i wan -m statistic --mode random --probability ${probability} -j DROP`,
    );
  }
  lines.push('COMMIT', '*mangle');
  for (const chain of ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']) {
    lines.push(`:${chain} ACCEPT [0:0]`);
  }
  if (probability > 0) {
    lines.push(
      `-A POSTROUTING -o wan -m statistic --mode random --probability ${probability} -j DROP`,
    );
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}
