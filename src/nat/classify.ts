/**
 * NAT classification from the public ports a NAT gave: one definition of "sequential" for
 * the client (its class, sent in `host`/`join`, picks the strategy per peer) and the doctor
 * (its port-allocation verdict). A module of its own, like hyperdht's lib/nat.js, because two
 * programs read NAT behaviour from ports and must not disagree on what they saw. Pure: ports
 * in, a class out.
 */
import type { NatClass } from '../protocol/index.js';

/**
 * Two public ports at most this far apart (either way) are sequential: the NAT hands out the
 * next free port, and a peer can sweep to it. Other flows behind a busy sequential NAT may
 * come between the two mappings (the NAT lab's 64-port round-robin pool also wraps, so
 * 40063 then 40000 is one step: docs/natlab.md, "Sequential ports"); two random ports are
 * this close once in ≈ 500. The client's sweep covers this range (`SWEEP_PORT_RANGE`).
 */
export const SEQUENTIAL_PORT_DELTA = 64;

/** Whether a NAT that mapped one flow to `first` and a later one to `next` allocates in turn. */
export function isSequentialStep(first: number, next: number): boolean {
  return first !== next && Math.abs(next - first) <= SEQUENTIAL_PORT_DELTA;
}

/** The NAT class from the public ports towards the server's main and alternate port. */
export function natClassOf(mainPort: number, altPort: number): NatClass {
  if (mainPort === altPort) return 'eim';
  return isSequentialStep(mainPort, altPort) ? 'edm-sequential' : 'edm-random';
}
