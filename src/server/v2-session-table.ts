/**
 * The state of the v2 session table (`V2Table`) and the scheduling of its per-session
 * wakeups. Apart so that the modules acting on the table (registration, requests, pushes,
 * endings, liveness) share one state object without importing the public face.
 */
import type { ServerCounters } from './counters.js';
import type { Outbox } from './handler.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import type { SourceLimits } from './source-limits.js';
import type { RelayAllocations } from './v2-relay.js';
import type { Member, Session } from './v2-session-records.js';
import { heapPush, type TimerEntry } from './v2-timer-heap.js';

/**
 * One table's whole state. `V2Sessions` owns the one instance; the modules are functions of
 * it, so each concern reads on its own while the table stays one object.
 */
export interface V2Table {
  readonly outbox: Outbox;
  readonly counters: ServerCounters;
  readonly randomBytes: (bytes: number) => Uint8Array;
  readonly ttlMs: number;
  readonly maxSessions: number;
  readonly maxPlayersCap: number;
  readonly autostart: boolean;
  readonly onLifecycle: ((event: SessionLifecycleEvent) => void) | undefined;
  readonly onMember: ((event: MemberLifecycleEvent) => void) | undefined;
  /** The `host`/`join` being handled: its refusal is reported as a `refused` member event. */
  registering: { readonly session: string; readonly name: string } | undefined;
  /** Undefined on a server that does not relay. */
  readonly relay: RelayAllocations | undefined;
  instances: number;
  /** Sessions in the table that started (the rest wait), kept as they change: O(1) to read. */
  startedOpen: number;
  /** Members of the sessions in the table, validated or not, kept as they change. */
  membersOpen: number;
  /** Set by `drain`: `host` and `join` are refused, started sessions go on. */
  draining: boolean;
  /**
   * Members of recently started sessions by token (hex), for relay requests. Insertion
   * order is expiry order (the window is constant), so expiry pops from the front.
   */
  readonly started: Map<
    string,
    { readonly session: Session; readonly member: Member; readonly until: number }
  >;
  readonly sessions: Map<string, Session>;
  /**
   * Names of recently started sessions: until when, and the addresses (IPs) of their members.
   * Insertion order is expiry order.
   */
  readonly recentlyStarted: Map<
    string,
    { readonly until: number; readonly addresses: ReadonlySet<string> }
  >;
  /**
   * Min-heap of per-session wakeups: a timeout touches only the sessions that are due, so
   * a million idle lobbies cost nothing per tick. Entries go stale (a refreshed expiry, a
   * forgotten session); a stale entry costs one pop.
   */
  readonly timers: TimerEntry[];
  /** Size of the datagram being handled: the budget of an `error` answering it. */
  requestBytes: number;
  /** Time of the datagram being handled (for the error bucket of its source). */
  now: number;
  readonly limits: SourceLimits | undefined;
}

/** Makes sure the session is woken at `at` (or earlier). */
export function schedule(t: V2Table, session: Session, at: number): void {
  if (at >= session.timerAt || !Number.isFinite(at)) return;
  session.timerAt = at;
  heapPush(t.timers, { at, session });
}
