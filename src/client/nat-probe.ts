/**
 * The client's NAT classification while registering (docs/protocol-v2.md §6): a `probe` to
 * the server's main port, then one to its alternate port, and the class from the two public
 * ports (src/nat, shared with the doctor). Its own module: it runs before registration, with
 * its own budget, and hands the traversal one `NatClass`.
 */
import type { Endpoint } from '../protocol/index.js';

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

/** NAT classification under way (`classifyNat`). */
export interface Classify {
  readonly until: number;
  nextAt: number;
  sent: number;
  /** Request id of the probe to the main port, then of the one to the alternate port. */
  id: number;
  to: Endpoint;
  mainPort: number | undefined;
  /** When the probe now awaited was last sent: its answer gives the round trip. */
  sentAt: number;
}
