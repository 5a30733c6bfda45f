import {
  CLOSE_REASONS,
  decodeLegacy,
  type Endpoint,
  encodeClose,
  encodeLobby,
  encodeOk,
  encodePeers,
  endpointKey,
  isLoopbackAddress,
  LEGACY_MAX_PLAYERS,
  type LegacyDecodeOptions,
  type LegacyPeerEntry,
  legacyAddressText,
  legacyNameProblem,
} from '../protocol/index.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox, ProtocolHandler } from './handler.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { DEFAULT_SERVER_SETTINGS, type ServerSettings } from './settings.js';
import { MEMORY_COSTS, type SourceLimits } from './source-limits.js';

// Where they were declared before settings.ts; tests and tools still import them from here.
export { DEFAULT_MAX_SESSIONS, SESSION_TTL_MS } from './settings.js';

/**
 * How a legacy session ends, as data (the lifecycle table; docs/server.md prints it).
 * A session has one live state, `waiting`, entered by an accepted `rs`; within it `rc` and
 * `cc` change the membership (members get `lobby:`). Every ending below deletes the session
 * at once, so its KEY can be registered again.
 */
export const LEGACY_SESSION_ENDINGS = {
  /** `rc` filled the session and autostart is on: every member gets `peers:`. */
  autostart: { state: 'started', counter: 'sessionsStarted', told: 'peers' },
  /** `ep:KEY` from the host: every member gets `peers:`. */
  exchange_peers: { state: 'started', counter: 'sessionsStarted', told: 'peers' },
  /** `cs:KEY:REASON` from the host: every member gets `close:REASON`. */
  host_closed: { state: 'closed', counter: 'sessionsClosed', told: 'close' },
  /** TTL ran out: every member gets `close:Session closed.`. */
  expired: { state: 'expired', counter: 'sessionsExpired', told: 'close' },
  /** The server stops: every member gets `close:Server shutting down`. */
  shutdown: { state: 'closed', counter: 'sessionsClosed', told: 'close' },
} as const;

export type LegacySessionEnding = keyof typeof LEGACY_SESSION_ENDINGS;

/**
 * `lobby:` bytes a session may send per byte it received. Every member gets every `lobby:`, so
 * one tiny datagram (`cc:N`, 4 bytes) could otherwise make the server send a 16-member lobby
 * to 15 addresses (~7.5 KB) that never asked. A session earns this much credit per byte of
 * each datagram addressed to it (`rs`, `rc`, `cc`) and spends it on broadcasts; a change it
 * cannot pay for waits, coalesced, until the next datagram to the session pays for it. A real
 * lobby filling up uses at most ~70 bytes out per byte in (16 members with 32-byte
 * nicknames), so it never waits; a forger gets at most this ratio (docs/security.md).
 */
export const LOBBY_CREDIT_PER_BYTE = 100;

/**
 * Bytes the legacy protocol may send one IP address at once, and per second after that: a
 * reflection aimed at one victim gets no more, however many sessions or forged members it
 * uses. A 16-player lobby costs each member about 10 KiB from `rs` to `peers:`, so a LAN of
 * players behind one address still fits. Datagrams over budget are dropped and counted
 * (`reply_budget`). Loopback addresses have no budget: no one on the network can forge them.
 */
export const LEGACY_ADDRESS_BURST_BYTES = 64 * 1024;
export const LEGACY_ADDRESS_BYTES_PER_S = 8 * 1024;

/** Refusals by the state machine (decoder refusals are the `LegacyRejectionKind`s). */
export const LEGACY_REFUSAL_KINDS = [
  'session_exists',
  'session_not_found',
  'session_full',
  'name_taken',
  'not_host',
  'not_owner',
  'too_many_sessions',
  'ipv6_unsupported',
  /** A `,` in NAME or NICKNAME, or one too long (replied with a `close:` line). */
  'bad_name',
  /** A reply dropped: its address had used up `LEGACY_ADDRESS_BURST_BYTES`. */
  'reply_budget',
  /** `rs` or a new member's `rc` refused: the memory budget is spent (`close:'Server full'`). */
  'memory_budget',
  /** `rs` or a new member's `rc` refused: the source's bucket is empty (docs/security.md). */
  'source_quota',
  /** A refusal's `close:` not sent: the source had its share of answered errors. */
  'error_budget',
  /** `rs` or `rc` while the server drains before it stops (`close:Server shutting down`). */
  'draining',
] as const;

export type LegacyRefusalKind = (typeof LEGACY_REFUSAL_KINDS)[number];

/** The server settings this table reads; those left out are `DEFAULT_SERVER_SETTINGS`'. */
export interface LegacySessionsOptions
  extends Pick<ServerSettings, 'autostart'>,
    Partial<Pick<ServerSettings, 'sessionTtlMs' | 'maxSessions' | 'maxPlayersCap'>> {
  readonly outbox: Outbox;
  readonly counters: ServerCounters;
  /** Called once per lifecycle event (not per datagram); the shell logs it. */
  readonly onLifecycle?: (event: SessionLifecycleEvent) => void;
  /** Called when a member joins, leaves (`cc`, or moves away) or a registration is refused. */
  readonly onMember?: (event: MemberLifecycleEvent) => void;
  /** Per-source quotas and the memory budget (docs/security.md). Default: none. */
  readonly limits?: SourceLimits;
}

/** A read-only copy of a session, for tests and diagnostics. */
export interface LegacySessionSnapshot {
  readonly key: string;
  readonly maxPlayers: number;
  readonly host: Endpoint;
  readonly deadline: number;
  readonly members: readonly {
    readonly name: string;
    readonly nickname: string;
    readonly address: string;
    readonly port: number;
  }[];
}

// Members double as the `Endpoint` the outbox sends to: no separate address object.
interface Member {
  readonly address: string;
  readonly port: number;
  readonly name: string;
  readonly nickname: string;
  readonly session: Session;
}

// Kept lean (≈ 100k idle sessions must fit in well under 100 MB): plain fields, members in an
// exact-length array replaced on change (a pushed-to array over-allocates 17 slots).
interface Session {
  readonly key: string;
  readonly maxPlayers: number;
  readonly hostAddress: string;
  readonly hostPort: number;
  readonly deadline: number;
  members: readonly Member[];
  live: boolean;
  /** `lobby:` bytes it may still send (`LOBBY_CREDIT_PER_BYTE` per byte received). */
  lobbyCredit: number;
  /** A membership change it could not yet pay to broadcast. */
  lobbyPending: boolean;
}

/** What the legacy protocol has sent an address lately: a token bucket in bytes. */
interface AddressBudget {
  bytes: number;
  at: number;
}

const NO_MEMBERS: readonly Member[] = Object.freeze([]);

// Refusal replies never change: encode them once.
const CLOSE_SESSION_EXISTS = encodeClose(CLOSE_REASONS.sessionExists);
const CLOSE_CLIENT_REGISTERED = encodeClose(CLOSE_REASONS.clientRegistered);
const CLOSE_SESSION_NOT_FOUND = encodeClose(CLOSE_REASONS.sessionNotFound);
const CLOSE_SESSION_FULL = encodeClose(CLOSE_REASONS.sessionFull);
const CLOSE_SESSION_EXPIRED = encodeClose(CLOSE_REASONS.sessionExpired);
const CLOSE_TOO_MANY_SESSIONS = encodeClose(CLOSE_REASONS.tooManySessions);
const CLOSE_IPV6_UNSUPPORTED = encodeClose(CLOSE_REASONS.ipv6Unsupported);
const CLOSE_COMMA_IN_NAME = encodeClose(CLOSE_REASONS.commaInName);
const CLOSE_NAME_TOO_LONG = encodeClose(CLOSE_REASONS.nameTooLong);
const CLOSE_SERVER_FULL = encodeClose(CLOSE_REASONS.serverFull);
const CLOSE_SOURCE_QUOTA = encodeClose(CLOSE_REASONS.sourceQuota);
const CLOSE_SHUTTING_DOWN = encodeClose(CLOSE_REASONS.serverShutdown);

// Dead queue entries are dropped in bulk once they are this many and half the queue.
const EXPIRY_QUEUE_COMPACT_MIN = 1024;
// Address budgets are swept for full ones when the map reaches this size (then twice its size).
const BUDGET_SWEEP_MIN = 4096;

/**
 * The legacy session table: a pure state machine (`now` injected, sends through `outbox`).
 * Names are scoped per session. A NAME registered from an address (IP + port) is that
 * address's: `cc:NAME` from anywhere else is ignored, and `rc` with the same NAME from the same
 * address replaces the earlier registration (same session: in place, idempotent; another
 * session: it moves). The host is the `rs` sender's IP: the real plugins send `rc`, `ep` and
 * `cs` from a second socket.
 *
 * Nothing in the legacy protocol proves that a source address is real, so what a datagram can
 * make the table send is bounded instead: nothing is re-broadcast that did not change, `lobby:`
 * broadcasts are paced per session, and every address has a byte budget (docs/security.md).
 */
export class LegacySessions implements ProtocolHandler {
  /** Set by `drain`: new sessions and members are refused. */
  #draining = false;
  readonly #outbox: Outbox;
  readonly #counters: ServerCounters;
  readonly #autostart: boolean;
  readonly #sessionTtlMs: number;
  readonly #maxSessions: number;
  readonly #decodeOptions: LegacyDecodeOptions;
  readonly #onLifecycle: ((event: SessionLifecycleEvent) => void) | undefined;
  readonly #onMember: ((event: MemberLifecycleEvent) => void) | undefined;
  readonly #sessions = new Map<string, Session>();
  // Members by NAME, to find "NAME from this address" for `cc` and re-registration. Keyed by
  // the member's own name string (no extra key string); only a NAME used in several sessions
  // gets a map by endpoint, so lookups stay O(1) however many sessions share it.
  readonly #membersByName = new Map<string, Member | Map<string, Member>>();
  // TTL is constant, so creation order is expiry order: a FIFO replaces a heap or timers.
  #expiryQueue: Session[] = [];
  #expiryHead = 0;
  // Sessions that started or closed early still sit in the queue; counted so that they can be
  // swept before they pile up (10k sessions/s × 600 s TTL would otherwise be 6M husks).
  #endedInQueue = 0;
  readonly #budgets = new Map<string, AddressBudget>();
  #budgetSweepAt = BUDGET_SWEEP_MIN;
  readonly #limits: SourceLimits | undefined;

  constructor(options: LegacySessionsOptions) {
    this.#outbox = options.outbox;
    this.#counters = options.counters;
    this.#autostart = options.autostart;
    this.#sessionTtlMs = options.sessionTtlMs ?? DEFAULT_SERVER_SETTINGS.sessionTtlMs;
    this.#maxSessions = options.maxSessions ?? DEFAULT_SERVER_SETTINGS.maxSessions;
    this.#decodeOptions = {
      maxPlayersCap: Math.min(
        options.maxPlayersCap ?? DEFAULT_SERVER_SETTINGS.maxPlayersCap,
        LEGACY_MAX_PLAYERS,
      ),
    };
    this.#onLifecycle = options.onLifecycle;
    this.#onMember = options.onMember;
    this.#limits = options.limits;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  handle(now: number, from: Endpoint, data: Uint8Array): void {
    const result = decodeLegacy(data, this.#decodeOptions);
    if (!result.ok) {
      countRejection(this.#counters, result.error.kind);
      return;
    }
    const msg = result.msg;
    switch (msg.type) {
      case 'register_session':
        this.#registerSession(now, from, msg.key, msg.maxPlayers, data.length);
        return;
      case 'register_client':
        this.#registerClient(now, from, msg.name, msg.key, msg.nickname, data.length);
        return;
      case 'exchange_peers': {
        const session = this.#hostedSession(from, msg.key);
        if (session !== undefined) this.#end(now, session, 'exchange_peers', undefined);
        return;
      }
      case 'close_session': {
        const session = this.#hostedSession(from, msg.key);
        if (session !== undefined) {
          this.#end(now, session, 'host_closed', msg.reason ?? CLOSE_REASONS.sessionExpired);
        }
        return;
      }
      case 'check_out':
        this.#checkOut(now, from, msg.name, data.length);
        return;
      case 'goodbye':
        // Sent by clients after `peers:`; the original ignored it too.
        return;
    }
  }

  nextDeadline(): number {
    const queue = this.#expiryQueue;
    while (this.#expiryHead < queue.length && !(queue[this.#expiryHead] as Session).live) {
      this.#expiryHead++;
      this.#endedInQueue--;
    }
    // The shell asks after every datagram, so skipped entries pile up before the head here
    // (lobbies mostly end in creation order) and #sweepEndedSessions never sees them: drop them.
    if (this.#expiryHead >= EXPIRY_QUEUE_COMPACT_MIN) this.#compactExpiryQueue();
    const head = this.#expiryQueue[this.#expiryHead];
    return head === undefined ? Number.POSITIVE_INFINITY : head.deadline;
  }

  handleTimeout(now: number): void {
    const queue = this.#expiryQueue;
    while (this.#expiryHead < queue.length) {
      const session = queue[this.#expiryHead] as Session;
      if (session.live && session.deadline > now) break;
      // Advance first: whatever ending a session does, the queue moves on.
      this.#expiryHead++;
      if (session.live) this.#end(now, session, 'expired', CLOSE_REASONS.sessionExpired);
      else this.#endedInQueue--;
    }
    this.#compactExpiryQueue();
  }

  /**
   * The server drains before it stops: open sessions are told `reason` and forgotten (as by
   * `shutdown`), and every later `rs`/`rc` is refused with `close:Server shutting down`.
   */
  drain(now: number, reason: string): void {
    this.shutdown(now, reason);
    this.#draining = true;
  }

  shutdown(now: number, reason: string): void {
    const bytes = encodeClose(reason);
    for (const session of this.#sessions.values()) {
      for (const member of session.members) this.#send(now, member, bytes);
      this.#limits?.budget.release(
        MEMORY_COSTS.legacySession + MEMORY_COSTS.legacyMember * session.members.length,
      );
      session.members = NO_MEMBERS;
      session.live = false;
      this.#counters.sessionsClosed++;
    }
    this.#sessions.clear();
    this.#membersByName.clear();
    this.#expiryQueue = [];
    this.#expiryHead = 0;
    this.#endedInQueue = 0;
  }

  /** Entries in the expiry queue, ended sessions not yet swept included (diagnostics). */
  get expiryQueueLength(): number {
    return this.#expiryQueue.length - this.#expiryHead;
  }

  /** The session registered as KEY, or undefined. */
  describeSession(key: string): LegacySessionSnapshot | undefined {
    const session = this.#sessions.get(key);
    return session === undefined ? undefined : snapshotOf(session);
  }

  /** Every open session, in creation order. */
  describeSessions(): LegacySessionSnapshot[] {
    return Array.from(this.#sessions.values(), snapshotOf);
  }

  #registerSession(
    now: number,
    from: Endpoint,
    key: string,
    maxPlayers: number,
    bytes: number,
  ): void {
    if (legacyAddressText(from.address) === undefined) {
      this.#refuse(now, from, CLOSE_IPV6_UNSUPPORTED, 'ipv6_unsupported', key, undefined);
      return;
    }
    // Every revision of the original answered `ok:` before it looked at the request; the
    // plugins take it as `session_registered`, and a refusal's `close:` follows.
    this.#send(now, from, encodeOk(from.port));
    if (this.#draining) {
      this.#refuse(now, from, CLOSE_SHUTTING_DOWN, 'draining', key, undefined);
      return;
    }
    const existing = this.#sessions.get(key);
    if (existing !== undefined) {
      const retransmission =
        existing.hostAddress === from.address &&
        existing.hostPort === from.port &&
        existing.maxPlayers === maxPlayers;
      // A retransmitted `rs` (its `ok:` was lost) changes nothing.
      if (!retransmission)
        this.#refuse(now, from, CLOSE_SESSION_EXISTS, 'session_exists', key, undefined);
      return;
    }
    if (this.#sessions.size >= this.#maxSessions) {
      this.#refuse(now, from, CLOSE_TOO_MANY_SESSIONS, 'too_many_sessions', key, undefined);
      return;
    }
    if (!this.#charge(now, from, MEMORY_COSTS.legacySession, 'session', key, undefined)) return;
    const session: Session = {
      key,
      maxPlayers,
      hostAddress: from.address,
      hostPort: from.port,
      // Whole milliseconds: a small integer is stored inline, a fraction would be a boxed double.
      deadline: Math.ceil(now + this.#sessionTtlMs),
      members: NO_MEMBERS,
      live: true,
      lobbyCredit: bytes * LOBBY_CREDIT_PER_BYTE,
      lobbyPending: false,
    };
    this.#sessions.set(key, session);
    this.#expiryQueue.push(session);
    this.#counters.sessionsCreated++;
    this.#onLifecycle?.({
      type: 'created',
      protocol: 'legacy',
      key,
      maxPlayers,
      members: 0,
      reason: undefined,
    });
  }

  #registerClient(
    now: number,
    from: Endpoint,
    name: string,
    key: string,
    nickname: string,
    bytes: number,
  ): void {
    if (legacyAddressText(from.address) === undefined) {
      this.#refuse(now, from, CLOSE_IPV6_UNSUPPORTED, 'ipv6_unsupported', key, name);
      return;
    }
    // `ok:` first, whatever follows, as every revision of the original (see `rs`).
    this.#send(now, from, encodeOk(from.port));
    if (this.#draining) {
      this.#refuse(now, from, CLOSE_SHUTTING_DOWN, 'draining', key, name);
      return;
    }
    const session = this.#sessions.get(key);
    if (session === undefined) {
      this.#refuse(now, from, CLOSE_SESSION_NOT_FOUND, 'session_not_found', key, name);
      return;
    }
    const problem = legacyNameProblem(name, nickname);
    if (problem !== undefined) {
      const reply =
        problem === CLOSE_REASONS.commaInName ? CLOSE_COMMA_IN_NAME : CLOSE_NAME_TOO_LONG;
      this.#refuse(now, from, reply, 'bad_name', key, name);
      return;
    }
    // The sender's earlier registration of this NAME, in this or another session.
    const previous = this.#findMember(name, from);
    const members = session.members;
    // The slot this registration replaces: the sender's own earlier membership of this session.
    let replaceIndex = -1;
    for (let i = 0; i < members.length; i++) {
      const member = members[i] as Member;
      if (member === previous) replaceIndex = i;
      else if (member.name === name) {
        this.#refuse(now, from, CLOSE_CLIENT_REGISTERED, 'name_taken', key, name);
        return;
      }
    }
    if (replaceIndex !== -1 && previous?.nickname === nickname) {
      // A retransmission changes nothing: its `ok:` went out, nothing is broadcast.
      this.#earn(now, session, bytes);
      return;
    }
    if (replaceIndex === -1 && members.length >= session.maxPlayers) {
      this.#refuse(now, from, CLOSE_SESSION_FULL, 'session_full', key, name);
      return;
    }
    if (
      replaceIndex === -1 &&
      !this.#charge(now, from, MEMORY_COSTS.legacyMember, 'member', key, name)
    ) {
      return;
    }
    // Moving to another session: leave the old one first (its members see the new lobby).
    if (previous !== undefined && previous.session !== session) {
      this.#removeMember(now, previous, 0);
      this.#member('left', previous.session.key, name, 'moved', previous);
    }
    // The host's `rc` shares the address string kept from its `rs`.
    const address = from.address === session.hostAddress ? session.hostAddress : from.address;
    const member: Member = { address, port: from.port, name, nickname, session };
    if (replaceIndex === -1) {
      session.members = appended(members, member);
    } else {
      const replaced = members.slice();
      replaced[replaceIndex] = member;
      session.members = replaced;
      this.#unindex(members[replaceIndex] as Member);
    }
    this.#index(member);
    if (replaceIndex === -1) this.#member('joined', key, name, undefined, from);
    if (this.#autostart && session.members.length >= session.maxPlayers) {
      // `peers:` straight away. The original sent the full lobby after `peers:`, when the
      // plugins had closed their server socket: no game ever saw it, so it is not sent.
      this.#end(now, session, 'autostart', undefined);
      return;
    }
    session.lobbyPending = true;
    this.#earn(now, session, bytes);
  }

  #checkOut(now: number, from: Endpoint, name: string, bytes: number): void {
    // Only the address that registered NAME may check it out (the original let anyone).
    const member = this.#findMember(name, from);
    if (member === undefined) {
      countRejection(this.#counters, 'not_owner');
      return;
    }
    this.#removeMember(now, member, bytes);
    this.#member('left', member.session.key, name, 'check_out', from);
  }

  /**
   * The session KEY if `from` is its host's IP; otherwise counts the refusal. The IP alone, as
   * the original: the plugins send `ep` and `cs` from the socket they opened after `rs`.
   */
  #hostedSession(from: Endpoint, key: string): Session | undefined {
    const session = this.#sessions.get(key);
    if (session === undefined) {
      countRejection(this.#counters, 'session_not_found');
      return undefined;
    }
    if (session.hostAddress !== from.address) {
      countRejection(this.#counters, 'not_host');
      return undefined;
    }
    return session;
  }

  /** `bytes`: the datagram that asked for it (none when a member moves to another session). */
  #removeMember(now: number, member: Member, bytes: number): void {
    const session = member.session;
    this.#limits?.budget.release(MEMORY_COSTS.legacyMember);
    this.#unindex(member);
    session.members = without(session.members, member);
    session.lobbyPending = true;
    this.#earn(now, session, bytes);
  }

  /** Credits a datagram addressed to the session, and sends a pending `lobby:` it now pays for. */
  #earn(now: number, session: Session, bytes: number): void {
    session.lobbyCredit += bytes * LOBBY_CREDIT_PER_BYTE;
    if (session.lobbyPending) this.#broadcastLobby(now, session);
  }

  /** `lobby:` to every member if the session's credit pays for it; else it stays pending. */
  #broadcastLobby(now: number, session: Session): void {
    const members = session.members;
    if (members.length === 0) {
      session.lobbyPending = false;
      return;
    }
    const bytes = encodeLobby(
      members.map((member) => member.nickname),
      session.maxPlayers,
    );
    const cost = bytes.length * members.length;
    if (cost > session.lobbyCredit) return;
    session.lobbyCredit -= cost;
    session.lobbyPending = false;
    for (const member of members) this.#send(now, member, bytes);
  }

  #end(
    now: number,
    session: Session,
    ending: LegacySessionEnding,
    reason: string | undefined,
  ): void {
    const rule = LEGACY_SESSION_ENDINGS[ending];
    const members = session.members;
    // Forgotten first: a failure below costs this session's messages, never the table.
    for (const member of members) this.#unindex(member);
    this.#limits?.budget.release(
      MEMORY_COSTS.legacySession + MEMORY_COSTS.legacyMember * members.length,
    );
    this.#sessions.delete(session.key);
    session.live = false;
    session.members = NO_MEMBERS;
    this.#counters[rule.counter]++;
    if (ending !== 'expired') {
      this.#endedInQueue++;
      this.#sweepEndedSessions();
    }
    if (rule.told === 'peers') {
      this.#sendPeers(now, session, members);
    } else if (members.length > 0) {
      const bytes =
        reason === CLOSE_REASONS.sessionExpired ? CLOSE_SESSION_EXPIRED : encodeClose(reason ?? '');
      for (const member of members) this.#send(now, member, bytes);
    }
    this.#onLifecycle?.({
      type: rule.state,
      protocol: 'legacy',
      key: session.key,
      maxPlayers: session.maxPlayers,
      members: members.length,
      reason: rule.told === 'close' ? reason : ending,
    });
  }

  /** `peers:` to each member, listing every OTHER member; HOSTING marks the host's entry. */
  #sendPeers(now: number, session: Session, members: readonly Member[]): void {
    const host = hostMemberOf(session, members);
    const entries = members.map(
      (member): LegacyPeerEntry => ({
        name: member.name,
        // Registration refused IPv6 senders, so every member has an IPv4 text form.
        address: legacyAddressText(member.address) ?? member.address,
        port: member.port,
        hosting: member === host,
      }),
    );
    for (let i = 0; i < members.length; i++) {
      const others = entries.filter((_, j) => j !== i);
      this.#send(now, members[i] as Member, encodePeers(others));
    }
  }

  #findMember(name: string, from: Endpoint): Member | undefined {
    const found = this.#membersByName.get(name);
    if (found === undefined) return undefined;
    if (found instanceof Map) return found.get(endpointKey(from));
    return found.port === from.port && found.address === from.address ? found : undefined;
  }

  // (NAME, address) is unique among members: `rc` replaces or moves an existing one.
  #index(member: Member): void {
    const found = this.#membersByName.get(member.name);
    if (found === undefined) {
      this.#membersByName.set(member.name, member);
    } else if (found instanceof Map) {
      found.set(endpointKey(member), member);
    } else {
      const byEndpoint = new Map<string, Member>();
      byEndpoint.set(endpointKey(found), found);
      byEndpoint.set(endpointKey(member), member);
      this.#membersByName.set(member.name, byEndpoint);
    }
  }

  #unindex(member: Member): void {
    const found = this.#membersByName.get(member.name);
    if (found === member) {
      this.#membersByName.delete(member.name);
    } else if (found instanceof Map) {
      const key = endpointKey(member);
      if (found.get(key) === member) {
        found.delete(key);
        if (found.size === 0) this.#membersByName.delete(member.name);
      }
    }
  }

  #refuse(
    now: number,
    to: Endpoint,
    reply: Uint8Array,
    kind: LegacyRefusalKind,
    key: string,
    name: string | undefined,
  ): void {
    countRejection(this.#counters, kind);
    if (this.#limits !== undefined && !this.#limits.allowError(now, to.address)) {
      countRejection(this.#counters, 'error_budget');
    } else {
      this.#send(now, to, reply);
    }
    this.#member('refused', key, name, kind, to);
  }

  /**
   * Charges a new session or member to the memory budget and to the sender's bucket; refuses
   * (and returns false) when either is spent. The budget is checked first: it says no to
   * everyone alike, and taking no token from the source for it.
   */
  #charge(
    now: number,
    from: Endpoint,
    bytes: number,
    what: 'session' | 'member',
    key: string,
    name: string | undefined,
  ): boolean {
    const limits = this.#limits;
    if (limits === undefined) return true;
    if (!limits.budget.reserve(bytes)) {
      this.#refuse(now, from, CLOSE_SERVER_FULL, 'memory_budget', key, name);
      return false;
    }
    const ok =
      what === 'session'
        ? limits.takeLegacySession(now, from.address)
        : limits.takeLegacyMember(now, from.address);
    if (ok) return true;
    limits.budget.release(bytes);
    this.#refuse(now, from, CLOSE_SOURCE_QUOTA, 'source_quota', key, name);
    return false;
  }

  /** Reports a member event; `from` is where it came from (a moved member: its old address). */
  #member(
    type: MemberLifecycleEvent['type'],
    key: string,
    name: string | undefined,
    reason: string | undefined,
    from: Endpoint,
  ): void {
    this.#onMember?.({
      type,
      protocol: 'legacy',
      key,
      name,
      reason,
      address: from.address,
      port: from.port,
    });
  }

  /** Sends unless the address has used up its byte budget (a reflection's victim, or a flood). */
  #send(now: number, to: Endpoint, data: Uint8Array): void {
    // Loopback cannot be a reflection's victim; tests and benchmarks put every client there.
    if (isLoopbackAddress(to.address)) {
      this.#outbox.send(to, data);
      return;
    }
    let budget = this.#budgets.get(to.address);
    if (budget === undefined) {
      if (this.#budgets.size >= this.#budgetSweepAt) this.#sweepBudgets(now);
      budget = { bytes: LEGACY_ADDRESS_BURST_BYTES, at: now };
      this.#budgets.set(to.address, budget);
    } else {
      refill(budget, now);
    }
    if (budget.bytes < data.length) {
      countRejection(this.#counters, 'reply_budget');
      return;
    }
    budget.bytes -= data.length;
    this.#outbox.send(to, data);
  }

  /** Forgets addresses whose budget is full again: amortised O(1) per new address. */
  #sweepBudgets(now: number): void {
    for (const [address, budget] of this.#budgets) {
      refill(budget, now);
      if (budget.bytes >= LEGACY_ADDRESS_BURST_BYTES) this.#budgets.delete(address);
    }
    this.#budgetSweepAt = Math.max(BUDGET_SWEEP_MIN, this.#budgets.size * 2);
  }

  /** Drops ended sessions from the queue once they are most of it: amortised O(1) per end. */
  #sweepEndedSessions(): void {
    const waiting = this.#expiryQueue.length - this.#expiryHead;
    if (this.#endedInQueue < EXPIRY_QUEUE_COMPACT_MIN || this.#endedInQueue * 2 < waiting) return;
    const live: Session[] = [];
    const queue = this.#expiryQueue;
    for (let i = this.#expiryHead; i < queue.length; i++) {
      const session = queue[i] as Session;
      if (session.live) live.push(session);
    }
    this.#expiryQueue = live;
    this.#expiryHead = 0;
    this.#endedInQueue = 0;
  }

  #compactExpiryQueue(): void {
    const head = this.#expiryHead;
    const queue = this.#expiryQueue;
    if (head === queue.length) {
      this.#expiryQueue = [];
      this.#expiryHead = 0;
    } else if (head >= EXPIRY_QUEUE_COMPACT_MIN && head * 2 >= queue.length) {
      this.#expiryQueue = queue.slice(head);
      this.#expiryHead = 0;
    }
  }
}

function refill(budget: AddressBudget, now: number): void {
  const elapsed = now - budget.at;
  if (elapsed <= 0) return;
  budget.bytes = Math.min(
    LEGACY_ADDRESS_BURST_BYTES,
    budget.bytes + (elapsed * LEGACY_ADDRESS_BYTES_PER_S) / 1000,
  );
  budget.at = now;
}

/**
 * The host's own membership, for HOSTING: the real plugin registers from a second socket
 * (same IP, new port) 2 s after `rs`, so the member from the `rs` sender's IP and port if there
 * is one, else the first to register from its IP.
 */
function hostMemberOf(session: Session, members: readonly Member[]): Member | undefined {
  let first: Member | undefined;
  for (const member of members) {
    if (member.address !== session.hostAddress) continue;
    if (member.port === session.hostPort) return member;
    first ??= member;
  }
  return first;
}

// Exact-length copies: spread and filter build arrays by pushing, which reserves 17 slots
// (136 bytes) for one member. Copy-on-write is cheap at ≤ 64 members per session.
function appended(members: readonly Member[], member: Member): Member[] {
  const copy = new Array<Member>(members.length + 1);
  for (let i = 0; i < members.length; i++) copy[i] = members[i] as Member;
  copy[members.length] = member;
  return copy;
}

function without(members: readonly Member[], member: Member): Member[] {
  let count = 0;
  for (const other of members) if (other !== member) count++;
  const copy = new Array<Member>(count);
  let next = 0;
  for (const other of members) if (other !== member) copy[next++] = other;
  return copy;
}

function snapshotOf(session: Session): LegacySessionSnapshot {
  return {
    key: session.key,
    maxPlayers: session.maxPlayers,
    host: { address: session.hostAddress, port: session.hostPort },
    deadline: session.deadline,
    members: session.members.map((member) => ({
      name: member.name,
      nickname: member.nickname,
      address: member.address,
      port: member.port,
    })),
  };
}
