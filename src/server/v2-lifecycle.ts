/**
 * How a v2 session ends, as data (the v2 twin of `LEGACY_SESSION_ENDINGS`; docs/server.md
 * prints both). `V2Sessions` sends every ending through one function that reads this table,
 * so each session counts exactly one ending and emits exactly one ending event.
 *
 * A v2 session is **waiting** (a lobby) from its accepted `host` until it ends. The rows with
 * a `counter` are its endings: each counts one of `sessionsStarted`, `sessionsClosed`,
 * `sessionsExpired` and emits the lifecycle event named by `state`. So, as for legacy,
 * `sessionsCreated` = `sessionsStarted` + `sessionsClosed` + `sessionsExpired` + the lobbies
 * waiting now.
 *
 * A started session (unlike a legacy one) stays in the table for at most `STARTED_LINGER_MS`
 * to re-push peers until acked, or, opened with `keepOpen`, that long for late joiners. It has already ended (as `started`), so the rows with
 * `from: 'started'` only take it out of the table: they count nothing and emit no event, even
 * where its members are told `closed` (the host's `close`, or shutdown, in the linger).
 */
export const V2_SESSION_ENDINGS = {
  /** A member's validation filled the lobby and autostart is on: every member gets `peers`. */
  autostart: { from: 'waiting', state: 'started', counter: 'sessionsStarted', told: 'peers' },
  /** `start` from the host: every validated member gets `peers`. */
  exchange_peers: { from: 'waiting', state: 'started', counter: 'sessionsStarted', told: 'peers' },
  /** `close` from the host: the others get `closed session_closed` with its reason. */
  host_closed: {
    from: 'waiting',
    state: 'closed',
    counter: 'sessionsClosed',
    told: 'session_closed',
  },
  /** `leave` from the host: the others get `closed host_left`. */
  host_left: { from: 'waiting', state: 'closed', counter: 'sessionsClosed', told: 'host_left' },
  /** Nothing from the validated host for `MEMBER_SILENCE_MS`: the others get `closed host_left`. */
  host_silent: { from: 'waiting', state: 'closed', counter: 'sessionsClosed', told: 'host_left' },
  /** The host never validated its address within `VALIDATE_WITHIN_MS`: `closed session_closed`. */
  host_unvalidated: {
    from: 'waiting',
    state: 'closed',
    counter: 'sessionsClosed',
    told: 'session_closed',
  },
  /** `sessionTtlMs` since the host's last request: `closed session_closed "Session expired."`. */
  expired: {
    from: 'waiting',
    state: 'expired',
    counter: 'sessionsExpired',
    told: 'session_closed',
  },
  /**
   * The server drains before it stops: `closed server_shutdown` with the drain's reason
   * (`session_closed` to a revision-0 member, which does not know that code).
   */
  drained: { from: 'waiting', state: 'closed', counter: 'sessionsClosed', told: 'server_shutdown' },
  /** The server stops: `closed server_shutdown` with the shutdown's reason (likewise). */
  shutdown: {
    from: 'waiting',
    state: 'closed',
    counter: 'sessionsClosed',
    told: 'server_shutdown',
  },

  // A started session leaves the table (it ended when it started: nothing is counted).
  /** Every member acked its peers (or left). */
  all_acked: { from: 'started', state: 'forgotten', counter: null, told: null },
  /** `STARTED_LINGER_MS` after the start. */
  linger_over: { from: 'started', state: 'forgotten', counter: null, told: null },
  /** A `host` for its name: a new session takes the name. */
  name_reused: { from: 'started', state: 'forgotten', counter: null, told: null },
  /** The host of an open session (`keepOpen`) sent `leave`: the others get `closed host_left`. */
  host_left_open: { from: 'started', state: 'forgotten', counter: null, told: 'host_left' },
  /** Nothing from the host of an open session for its silence: `closed host_left`. */
  host_silent_open: { from: 'started', state: 'forgotten', counter: null, told: 'host_left' },
  /** `close` from the host in the linger: the others get `closed session_closed`. */
  host_closed_started: {
    from: 'started',
    state: 'forgotten',
    counter: null,
    told: 'session_closed',
  },
  /** The server stops in the linger: every validated member gets `closed server_shutdown`. */
  shutdown_started: {
    from: 'started',
    state: 'forgotten',
    counter: null,
    told: 'server_shutdown',
  },
} as const satisfies Record<string, V2SessionEndingRow>;

export type V2SessionEnding = keyof typeof V2_SESSION_ENDINGS;

/** One row of `V2_SESSION_ENDINGS`: a waiting session's ending, or a started one's removal. */
export type V2SessionEndingRow =
  | {
      readonly from: 'waiting';
      /** What it becomes, and the type of the lifecycle event it emits. */
      readonly state: 'started' | 'closed' | 'expired';
      /** Counted once, when the session ends. */
      readonly counter: 'sessionsStarted' | 'sessionsClosed' | 'sessionsExpired';
      /** What the members hear: `peers`, or a `closed` push with this code. */
      readonly told: 'peers' | 'session_closed' | 'host_left' | 'server_shutdown';
    }
  | {
      readonly from: 'started';
      /** Out of the table: no event (its `started` event was its ending). */
      readonly state: 'forgotten';
      /** Nothing: it was counted as `sessionsStarted`. */
      readonly counter: null;
      /** A `closed` push with this code, or nothing. */
      readonly told: 'session_closed' | 'host_left' | 'server_shutdown' | null;
    };
