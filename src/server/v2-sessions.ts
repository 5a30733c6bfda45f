/**
 * The v2 half of the rendezvous server (docs/protocol-v2.md): a sans-IO session table.
 * Pure: time comes in as `now`, randomness through `randomBytes`, datagrams go out
 * through the outbox. Datagram in/out totals are counted by the dispatcher.
 *
 * This is the table's one public face. Its state is one `V2Table` (v2-session-table.ts); the
 * work on it is split by concern: registration (`host`/`join`), the requests of members,
 * rebind, pushes (lobby, peers), endings, liveness (timers) and direct replies.
 */
import { decodeV2, type Endpoint, MAX_PLAYERS_WIRE } from '../protocol/index.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox, ProtocolHandler } from './handler.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { DEFAULT_SERVER_SETTINGS, type ServerSettings } from './settings.js';
import type { SourceLimits } from './source-limits.js';
import { endSession } from './v2-endings.js';
import { handleTimeout, nextDeadline } from './v2-liveness.js';
import { RelayAllocations, type RelayIo } from './v2-relay.js';
import { replyError } from './v2-replies.js';
import { handleRequest, relayAllocate } from './v2-requests.js';
import type { V2Table } from './v2-session-table.js';

export { ERROR_REPLY_FACTOR } from './v2-replies.js';
export {
  KEEPALIVES_PER_SILENCE,
  MEMBER_SILENCE_MS,
  PEERS_ACK_WITHIN_MS,
  PEERS_MAX_TRIES,
  PEERS_RETRY_FIRST_MS,
  RELAY_ASK_WINDOW_MS,
  STARTED_LINGER_MS,
  STARTED_NAME_MEMORY_MS,
  VALIDATE_WITHIN_MS,
} from './v2-session-timing.js';

/**
 * The server settings this table reads. `relay` (docs/protocol-v2.md, "Relay") runs only with
 * `relayIo`; `relay`, `relayPorts` and `relayLimits` left out are `DEFAULT_SERVER_SETTINGS`'.
 */
export interface V2SessionsOptions
  extends Pick<ServerSettings, 'sessionTtlMs' | 'maxSessions' | 'maxPlayersCap' | 'autostart'>,
    Partial<Pick<ServerSettings, 'relay' | 'relayPorts' | 'relayLimits'>> {
  readonly outbox: Outbox;
  readonly counters: ServerCounters;
  /** Fills `bytes` with cryptographically random bytes (tokens). Injected for determinism. */
  readonly randomBytes: (bytes: number) => Uint8Array;
  /** The relay's sockets (the server core's work queue); without it the server does not relay. */
  readonly relayIo?: RelayIo;
  /** Session state changes, for the shell's logs (never per datagram). Default: none. */
  readonly onLifecycle?: (event: SessionLifecycleEvent) => void;
  /**
   * Members joining (validated), leaving, refused and relayed, for the shell's logs: once per
   * change or refused registration, never per retransmission that changes nothing.
   */
  readonly onMember?: (event: MemberLifecycleEvent) => void;
  /** Per-source quotas and the memory budget (docs/security.md). Default: none. */
  readonly limits?: SourceLimits;
}

export class V2Sessions implements ProtocolHandler {
  readonly #t: V2Table;

  constructor(options: V2SessionsOptions) {
    this.#t = {
      outbox: options.outbox,
      counters: options.counters,
      randomBytes: options.randomBytes,
      ttlMs: options.sessionTtlMs,
      maxSessions: options.maxSessions,
      maxPlayersCap: Math.min(options.maxPlayersCap, MAX_PLAYERS_WIRE),
      autostart: options.autostart,
      onLifecycle: options.onLifecycle,
      onMember: options.onMember,
      registering: undefined,
      relay:
        options.relay === false || options.relayIo === undefined
          ? undefined
          : new RelayAllocations({
              outbox: options.outbox,
              io: options.relayIo,
              counters: options.counters,
              randomBytes: options.randomBytes,
              ports: options.relayPorts ?? DEFAULT_SERVER_SETTINGS.relayPorts,
              ...(options.relayLimits === undefined ? {} : { limits: options.relayLimits }),
            }),
      instances: 0,
      startedOpen: 0,
      membersOpen: 0,
      draining: false,
      started: new Map(),
      sessions: new Map(),
      recentlyStarted: new Map(),
      timers: [],
      requestBytes: 0,
      now: 0,
      limits: options.limits,
    };
  }

  get sessionCount(): number {
    return this.#t.sessions.size;
  }

  /** Sessions in the table that started (lingering for acks, at most `STARTED_LINGER_MS`). */
  get startedCount(): number {
    return this.#t.startedOpen;
  }

  /** Sessions in the table still waiting for players. */
  get waitingCount(): number {
    return this.#t.sessions.size - this.#t.startedOpen;
  }

  /** Members of the sessions in the table (unvalidated ones included). */
  get memberCount(): number {
    return this.#t.membersOpen;
  }

  /** True once `drain` was called. */
  get draining(): boolean {
    return this.#t.draining;
  }

  /** The relay (its allocations and ports), or undefined on a server that does not relay. */
  get relay(): RelayAllocations | undefined {
    return this.#t.relay;
  }

  handle(now: number, from: Endpoint, data: Uint8Array): void {
    const t = this.#t;
    t.requestBytes = data.length;
    t.now = now;
    const decoded = decodeV2(data);
    if (!decoded.ok) {
      if (decoded.code === undefined || decoded.requestId === undefined) {
        countRejection(t.counters, 'v2_malformed');
        return;
      }
      countRejection(
        t.counters,
        decoded.code === 'unsupported_version' ? 'v2_unsupported_version' : 'v2_bad_request',
      );
      replyError(t, from, decoded.requestId, decoded.code, decoded.error);
      return;
    }
    const msg = decoded.msg;
    switch (msg.type) {
      case 'host':
      case 'join':
      case 'start':
      case 'leave':
      case 'close':
      case 'keepalive':
      case 'peers_ack':
        handleRequest(t, now, from, msg);
        return;
      case 'relay_allocate':
        relayAllocate(t, now, from, msg);
        return;
      case 'relay_bind':
        // Binds go to a relay port, never to the server's own.
        countRejection(t.counters, 'v2_relay_bind_to_server');
        return;
      default:
        // Server pushes or peer messages sent to the server: never answer (no reflection loops).
        countRejection(t.counters, 'v2_unexpected_type');
    }
  }

  nextDeadline(): number {
    return nextDeadline(this.#t);
  }

  handleTimeout(now: number): void {
    handleTimeout(this.#t, now);
  }

  /**
   * The server drains before it stops: waiting lobbies are closed with `reason` (as by
   * `shutdown`), `host` and `join` are refused from now on, and started sessions and their
   * relay allocations go on until they end by themselves or `shutdown` comes.
   */
  drain(now: number, reason: string): void {
    const t = this.#t;
    t.draining = true;
    for (const session of [...t.sessions.values()]) {
      if (session.state === 'waiting') endSession(t, now, session, 'drained', reason);
    }
  }

  /**
   * The server stops: every member of every session in the table is told `reason`. Waiting
   * lobbies end `closed` (counted); started ones already ended, and only go.
   */
  shutdown(now: number, reason: string): void {
    const t = this.#t;
    for (const session of [...t.sessions.values()]) {
      endSession(
        t,
        now,
        session,
        session.state === 'waiting' ? 'shutdown' : 'shutdown_started',
        reason,
      );
    }
    t.timers.length = 0;
    t.started.clear();
    t.relay?.clear();
  }
}
