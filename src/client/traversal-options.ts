/**
 * What a traversal is asked to do (`TraversalOptions`) and the check of the user's input
 * before anything is sent. Apart from the state machine so the options read as one reference
 * (docs/client.md lists them) and the shell can check input before it opens a socket.
 */
import { HolePunchError } from '../errors.js';
import type { Endpoint } from '../protocol/index.js';
import {
  isValidField,
  MAX_KEEP_OPEN_S,
  MAX_NAME_BYTES,
  MAX_NICKNAME_BYTES,
  MAX_PLAYERS_WIRE,
  MAX_SESSION_BYTES,
  MAX_SILENCE_S,
  MIN_PLAYERS,
  MIN_SILENCE_S,
} from '../protocol/index.js';

export interface TraversalOptions {
  readonly server: Endpoint;
  readonly session: string;
  readonly isHost: boolean;
  readonly name: string;
  readonly nickname: string;
  readonly maxPlayers: number;
  /** Our LAN addresses with the bound port, handed to peers for same-NAT players. */
  readonly localCandidates: readonly Endpoint[];
  /** Uniform in [0, 1); picks the first request id. */
  readonly random: () => number;
  /** From `start` to success; `Infinity` (the default) waits in the lobby as long as it takes. */
  readonly timeoutMs?: number;
  readonly punchBudgetMs?: number;
  /**
   * Reach peers without a direct path through the server's relay (default true): asked for
   * `relayDelayMs` after the peers arrived, in parallel with the punch.
   */
  readonly relay?: boolean;
  /** Default `RELAY_DELAY_MS`. */
  readonly relayDelayMs?: number;
  /**
   * Measure our NAT class before registering (two `probe`s, at most `CLASSIFY_WITHIN_MS`)
   * and send it in `host`/`join`. Default false in the core; `HolePunchClient` turns it on.
   */
  readonly classifyNat?: boolean;
  /** Choose the strategy per peer from both NAT classes (default true). */
  readonly natStrategy?: boolean;
  /**
   * Fail unless every peer is reached. Default false: succeed when at least one peer is
   * reached, and list the others in the `punched` event's `failed` with their cause.
   */
  readonly requireAllPeers?: boolean;
  /**
   * Host: keep the session open this long after the start (ms, whole seconds on the wire, at
   * most 65535 s): late joiners and members coming back under their name are punched to
   * everyone present (docs/protocol-v2.md §4, "Open sessions"). Default 0: closed at the start.
   */
  readonly keepOpenMs?: number;
  /**
   * Host: a member silent this long leaves the lobby (ms, 6000-60000, whole seconds; default
   * the server's 15000). Members then send keepalives a third as often.
   */
  readonly memberSilenceMs?: number;
  /**
   * Joiner: how long a `join` to a session that does not exist (yet) is retried, since its
   * host may not have registered yet (default `SESSION_WAIT_MS`); 0 fails at the first
   * `session_not_found`.
   */
  readonly sessionWaitMs?: number;
}

/** Validates user input before it goes anywhere; throws `bad_request`. */
export function checkTraversalInput(o: {
  session: string;
  name: string;
  nickname: string;
  maxPlayers: number;
  keepOpenMs?: number | undefined;
  memberSilenceMs?: number | undefined;
}): void {
  if (!isValidField(o.session, MAX_SESSION_BYTES)) {
    throw new HolePunchError('bad_request', `session must be 1..${MAX_SESSION_BYTES} UTF-8 bytes`);
  }
  if (!isValidField(o.name, MAX_NAME_BYTES)) {
    throw new HolePunchError('bad_request', `name must be 1..${MAX_NAME_BYTES} UTF-8 bytes`);
  }
  if (!isValidField(o.nickname, MAX_NICKNAME_BYTES, true)) {
    throw new HolePunchError('bad_request', `nickname must be at most ${MAX_NICKNAME_BYTES} bytes`);
  }
  if (
    !Number.isInteger(o.maxPlayers) ||
    o.maxPlayers < MIN_PLAYERS ||
    o.maxPlayers > MAX_PLAYERS_WIRE
  ) {
    throw new HolePunchError(
      'bad_request',
      `maxPlayers must be ${MIN_PLAYERS}..${MAX_PLAYERS_WIRE}`,
    );
  }
  const keepOpen = o.keepOpenMs ?? 0;
  if (!Number.isFinite(keepOpen) || keepOpen < 0 || keepOpen > MAX_KEEP_OPEN_S * 1000) {
    throw new HolePunchError('bad_request', `keepOpenMs must be 0..${MAX_KEEP_OPEN_S * 1000}`);
  }
  const silence = o.memberSilenceMs ?? 0;
  if (silence !== 0 && !(silence >= MIN_SILENCE_S * 1000 && silence <= MAX_SILENCE_S * 1000)) {
    throw new HolePunchError(
      'bad_request',
      `memberSilenceMs must be ${MIN_SILENCE_S * 1000}..${MAX_SILENCE_S * 1000}`,
    );
  }
}
