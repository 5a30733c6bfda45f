/**
 * The strategy per peer from both NAT classes (docs/protocol-v2.md §6, "Strategy"): punch,
 * sweep, birthday probing or the relay at once, and how long each waits before it asks the
 * relay. A table-like pure function apart from the state machine, so the grid can be read
 * (and generated for the GDScript addon) as one thing.
 */
import type { NatClass, V2Peer } from '../protocol/index.js';

/**
 * A peer not confirmed directly this long after the peer list arrived gets a relay
 * allocation asked for, while the punch goes on: a pair without a direct path plays through
 * the relay within ~1.5 s, a pair with one has usually confirmed it by then (a punch
 * confirms in one round trip). `requestRelay` asks at once (e.g. when both NAT types make
 * a direct path impossible).
 */
export const RELAY_DELAY_MS = 500;
/**
 * A birthday pair (docs/protocol-v2.md §6, "Strategy") asks the relay this long after the
 * peers arrived instead of `RELAY_DELAY_MS`: birthday probing needs about a second (a few at
 * heavy loss), and a pair relayed first would stay on the relay's socket.
 */
export const BIRTHDAY_RELAY_DELAY_MS = 3_000;
/**
 * A sequential pair (`sequential-easy` / `sequential-hard`) asks the relay this long after
 * the peers arrived: the easy side's sweep opens its filter within a round, but each punch
 * of the sequential side needs every uplink on the way (a round trip through three lossy
 * uplinks, as to a double NAT, gets through ≈ 0.12 of the time at the lab's 30 % loss, so
 * 2 s still left ≈ 3 % relayed), and a pair relayed first reports the relay even when the
 * direct path follows.
 */
export const SEQUENTIAL_RELAY_DELAY_MS = 3_000;

/**
 * What to do with one peer, from both NAT classes (ours first) and the session size:
 * - `relay`: no direct path is to be expected (a random-port side against another
 *   port-dependent side, or a random-port side in a session of more than two): ask the
 *   relay at once, and punch all the same;
 * - `birthday-easy` / `birthday-hard`: one side `eim` (or `unknown`), the other `edm-random`,
 *   two players;
 * - `sequential-easy` / `sequential-hard`: one side `eim` (or `unknown`), the other
 *   `edm-sequential`: the
 *   easy side sweeps ±`SWEEP_PORT_RANGE` ports of the hard side's public port from the first
 *   round, the hard side predicts nothing (the easy side keeps its port), and the relay waits
 *   `SEQUENTIAL_RELAY_DELAY_MS`;
 * - `punch`: everything else, as without classes (`unknown` on either side included).
 */
export type PeerStrategy =
  | 'punch'
  | 'relay'
  | 'birthday-easy'
  | 'birthday-hard'
  | 'sequential-easy'
  | 'sequential-hard';

export function peerStrategy(self: NatClass, peer: NatClass, peerCount: number): PeerStrategy {
  // An unknown side against a sequential one is treated as easy (classification fails mostly
  // on loss, not on hard NATs): if it is hard after all the pair needs the relay anyway.
  if ((self === 'eim' || self === 'unknown') && peer === 'edm-sequential') {
    return 'sequential-easy';
  }
  if (self === 'edm-sequential' && (peer === 'eim' || peer === 'unknown')) {
    return 'sequential-hard';
  }
  // Likewise against a random-port side in a two-player session: if the unknown side is easy
  // birthday probing is the one direct path (the plain punch goes on beside it), and if it is
  // hard the pair needs the relay anyway.
  if (peerCount === 1 && self === 'unknown' && peer === 'edm-random') return 'birthday-easy';
  if (peerCount === 1 && self === 'edm-random' && peer === 'unknown') return 'birthday-hard';
  if (self === 'unknown' || peer === 'unknown') return 'punch';
  if (self !== 'edm-random' && peer !== 'edm-random') return 'punch';
  if (self === 'eim' || peer === 'eim') {
    if (peerCount !== 1) return 'relay';
    return self === 'eim' ? 'birthday-easy' : 'birthday-hard';
  }
  return 'relay';
}

/** A peer list's strategies, who gets the relay at once, and how long the others wait. */
export interface StrategyPlan {
  /** Each peer's strategy, in the list's order. */
  readonly strategies: readonly (readonly [name: string, strategy: PeerStrategy])[];
  readonly relayNow: readonly string[];
  readonly relayDelayMs: number;
}

export interface PlanOptions {
  /** `natStrategy` (off: every peer is `punch`). */
  readonly natStrategy: boolean;
  /** `relayDelayMs`: the plain punch's relay delay, which a strategy may lengthen. */
  readonly relayDelayMs: number;
  /** The session's other members (the whole list, for a late list too). */
  readonly peerCount: number;
  /**
   * A late list of an open session: birthday probing needs the game's one socket for one
   * peer, not to be had after the start, so such a peer gets the relay at once.
   */
  readonly late: boolean;
}

export function planStrategies(
  self: NatClass,
  peers: readonly V2Peer[],
  o: PlanOptions,
): StrategyPlan {
  let relayDelayMs = o.relayDelayMs;
  const relayNow: string[] = [];
  const strategies: (readonly [string, PeerStrategy])[] = [];
  for (const p of peers) {
    const strategy = o.natStrategy ? peerStrategy(self, p.nat ?? 'unknown', o.peerCount) : 'punch';
    strategies.push([p.name, strategy]);
    if (strategy === 'relay' || (o.late && strategy.startsWith('birthday'))) relayNow.push(p.name);
    else if (strategy === 'sequential-easy' || strategy === 'sequential-hard') {
      relayDelayMs = Math.max(relayDelayMs, SEQUENTIAL_RELAY_DELAY_MS);
    } else if (strategy === 'birthday-easy' || strategy === 'birthday-hard') {
      relayDelayMs = Math.max(relayDelayMs, BIRTHDAY_RELAY_DELAY_MS);
    }
  }
  return { strategies, relayNow, relayDelayMs };
}
