/**
 * Every failure message a player sees from a traversal, in one table: the words of a
 * `failed` event's error and of each unreached peer's cause. Separate from the state machine
 * (traversal.ts decides *that* it fails and with which code; this says it in words) so the
 * wording is read, reviewed and compared with the GDScript addon's in one place. Pure
 * functions of what the traversal knows; the strings are the ones the README and tests quote.
 */
import type { Endpoint } from '../protocol/index.js';
import type { FailedPeer, PeerFailureCause } from './punch.js';

/** A `failed` event's message, by situation. */
export const FAILURE_MESSAGES = {
  /** The server never answered anything since the start. */
  serverUnreachable: (server: Endpoint, elapsedMs: number): string =>
    `no answer from the server ${server.address}:${server.port} in ${Math.round(elapsedMs)} ms: ` +
    'check that it runs there and that its UDP port is open',
  /** The server answered once, then fell silent for `silenceMs`. */
  serverSilent: (server: Endpoint, silenceMs: number): string =>
    `no answer from the server ${server.address}:${server.port} for ${silenceMs} ms`,
  /** A join found no such session within its wait. */
  noSession: (session: string, waitedS: number): string =>
    `no session "${session}" on the server after ${waitedS} s: check the name, and that its host has started hosting`,
  /** A join refused because the session is full (or started and closed). */
  sessionFull: (session: string, serverMessage: string): string =>
    `session "${session}" cannot take you: ${serverMessage}`,
  /** Our token no longer opens the session (it ended while we waited). */
  sessionGone: (serverMessage: string): string => `the session is gone: ${serverMessage}`,
  /** A `closed` push without a reason. */
  sessionClosed: 'Session closed.',
  /** `timeoutMs` ran out in the lobby. */
  lobbyTimeout: (
    timeoutMs: number | undefined,
    lobbySize: string,
    lobbyFull: boolean,
    isHost: boolean,
  ): string =>
    `the session did not start within ${timeoutMs} ms` +
    (lobbySize ? ` (lobby ${lobbySize})` : '') +
    (lobbyFull
      ? isHost
        ? ': the lobby is full and the server waits for you to start it (finalizePeers)'
        : ': the lobby is full and the server waits for the host to start it'
      : ''),
  /** `timeoutMs` ran out while punching. */
  punchTimeout: (timeoutMs: number | undefined): string =>
    `no connection to all peers within ${timeoutMs} ms`,
  /**
   * The punch settled with peers unreached: `reached` the names of those reached (a partial
   * result under `requireAllPeers`), `why` each unreached peer's `peerFailure` text.
   */
  punchFailed: (
    reached: readonly string[],
    why: readonly string[],
    candidates: number,
    sent: number,
  ): string =>
    `${reached.length > 0 ? `reached ${reached.join(', ')} but not all: ` : ''}${why.join('; ')} ` +
    `(${candidates} candidates, ${sent} datagrams sent)`,
  /** Recorded per peer when the server refuses a relay allocation (a `relay_unavailable` cause). */
  relayRefused: (code: string, serverMessage: string): string =>
    `the server cannot relay (${code}: ${serverMessage})`,
} as const;

/** What the traversal knows about an unreached peer's relay, for its failure text. */
export interface RelayContext {
  readonly relayOn: boolean;
  /** Our relay port towards it, when the allocation was bound. */
  readonly boundPort: number | undefined;
  /** The server's refusal (`relayRefused`), if it refused. */
  readonly refusal: string | undefined;
}

/** What became of the relay to a missed peer, for the failure message. */
function relayNote(name: string, r: RelayContext): string {
  if (!r.relayOn) return ' (the relay is off: relay false / --no-relay)';
  if (r.boundPort !== undefined)
    return `; our relay port ${r.boundPort} works but ${name} never reached it`;
  return '; no relay allocation was granted in time';
}

/** One unreached peer and its cause, in words, by cause. */
export const PEER_FAILURE_MESSAGES: Record<
  PeerFailureCause,
  (name: string, budgetMs: number, relay: RelayContext) => string
> = {
  left: (name) => `${name} left the session`,
  silent: (name) =>
    `${name} stopped answering the server after the start (it crashed, quit or lost its network)`,
  no_answer: (name, budget, relay) =>
    `nothing from ${name} got through and none of our punches was answered within the ` +
    `punch budget (${budget} ms), although the server lists it: the NATs between you need ` +
    `the relay (typically a symmetric NAT on both sides), or a firewall drops UDP${relayNote(name, relay)}`,
  one_way: (name, budget, relay) =>
    `${name}'s punches reached us but ours never reached it within the punch budget ` +
    `(${budget} ms): its NAT filters us (typically a symmetric NAT on one side), and the ` +
    `relay would connect you${relayNote(name, relay)}`,
  relay_unavailable: (name, _budget, relay) =>
    `no direct path to ${name} and ${relay.refusal ?? 'no relay'}`,
};

/** `f` in words. */
export function peerFailureMessage(f: FailedPeer, budgetMs: number, relay: RelayContext): string {
  return PEER_FAILURE_MESSAGES[f.cause](f.name, budgetMs, relay);
}
