/**
 * The v2 half of the rendezvous server (docs/protocol-v2.md): a sans-IO session table.
 * Pure: time comes in as `now`, randomness through `randomBytes`, datagrams go out
 * through the outbox. Datagram in/out totals are counted by the dispatcher.
 */
import type { ErrorCode } from '../errors.js';
import {
  bytesKey,
  decodeV2,
  type Endpoint,
  encodePeerEntry,
  encodePushBody,
  encodeV2,
  encodeV2Peers,
  isUnicastEndpoint,
  isValidField,
  MAX_DATAGRAM_BYTES,
  MAX_NAME_BYTES,
  MAX_NICKNAME_BYTES,
  MAX_PLAYERS_WIRE,
  MAX_SESSION_BYTES,
  MAX_SILENCE_S,
  MIN_PLAYERS,
  MIN_SILENCE_S,
  type NatClass,
  PEERS_FIXED_BYTES,
  type PeerLeftWhy,
  PUNCH_KEY_BYTES,
  sameEndpoint,
  sealPush,
  TOKEN_BYTES,
  truncateUtf8,
  unmappedAddress,
  type V2Message,
} from '../protocol/index.js';
import { countRejection, type ServerCounters } from './counters.js';
import type { Outbox, ProtocolHandler } from './handler.js';
import type { MemberLifecycleEvent, SessionLifecycleEvent } from './lifecycle.js';
import { DEFAULT_SERVER_SETTINGS, type ServerSettings } from './settings.js';
import { MEMORY_COSTS, type SourceLimits, sourceKey } from './source-limits.js';
import {
  V2_SESSION_ENDINGS,
  type V2SessionEnding,
  type V2SessionEndingRow,
} from './v2-lifecycle.js';
import { RELAY_REFUSAL_MESSAGES, RelayAllocations, type RelayIo } from './v2-relay.js';

/** First re-push of `peers` to a member that has not acked them; doubles each time. */
export const PEERS_RETRY_FIRST_MS = 150;
export const PEERS_MAX_TRIES = 6;
/**
 * A validated member of a waiting lobby that sent nothing for this long is dropped (the
 * others get the new lobby); a silent host closes the lobby with `host_left`. Clients send a
 * keepalive every 5 s, so this is three missed keepalives: a crashed or unplugged player
 * leaves the lobby within seconds instead of holding its slot until the session expires.
 */
export const MEMBER_SILENCE_MS = 15_000;
/**
 * A member sends a keepalive this often: a third of the session's silence limit (5 s for the
 * default 15 s), so one lost keepalive, even two, does not drop it. Told to revision ≥ 1
 * members in `registered`; revision 0 clients keep their fixed 5 s.
 */
export const KEEPALIVES_PER_SILENCE = 3;
/**
 * A member that has not acked its peers this long after the start (after 6 pushes and its
 * own keepalive) is reported to the others as gone (`peer_left`, why `silent`), so their
 * punch failure names the cause. Shorter than the clients' 8 s punch budget.
 */
export const PEERS_ACK_WITHIN_MS = 6_000;
/** A started session is forgotten once all members acked, at the latest after this. */
export const STARTED_LINGER_MS = 15_000;
/**
 * A late `join` for a session that started this recently is told `session_full` (it started
 * without you) instead of `session_not_found`, which a joiner takes for a host that has not
 * registered yet and waits for.
 */
export const STARTED_NAME_MEMORY_MS = 60_000;
/**
 * Members of a started session may ask for relay channels this long after the start (a
 * client asks when its punch budget, 8 s from the peers, runs out), even after the session
 * itself is forgotten and its name taken by the next game.
 */
export const RELAY_ASK_WINDOW_MS = 15_000;
/**
 * A new member has this long to prove that it receives at the address it registered from,
 * by sending `keepalive` or `start` with the token that was sent only there. Until then it
 * gets nothing but `registered`, is not in the lobby and is dropped at the start, so a
 * `host` or `join` with a forged source address cannot aim the server's lobby and peer
 * pushes at a third party (reflection). Room for ~20 tries of the client at heavy loss.
 */
export const VALIDATE_WITHIN_MS = 10_000;
/**
 * An `error` reply is at most this many times the size of the datagram it answers (its
 * message is cut to fit; the code always goes). Errors answer unauthenticated input, so
 * they must not make the server an amplifier. QUIC's limit for unvalidated addresses.
 */
export const ERROR_REPLY_FACTOR = 3;
/** Header (9) and the two length bytes of an `error`. */
const ERROR_FIXED_BYTES = 11;
/**
 * Header (9), token (16), the address length and port, and the revision-1 keepalive (2) of a
 * `registered`.
 */
const REGISTERED_FIXED_BYTES = 30;

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

interface Member {
  readonly name: string;
  readonly nickname: string;
  token: Uint8Array;
  readonly isHost: boolean;
  endpoint: Endpoint;
  readonly candidates: readonly Endpoint[];
  /** Its NAT class as it said in `host`/`join`, passed on to its peers. */
  readonly nat: NatClass;
  /** The revision of v2 it speaks (`host`/`join`): ≥ 1 gets the revision's trailers. */
  readonly revision: number;
  /** The member has shown that it receives at `endpoint` (see `VALIDATE_WITHIN_MS`). */
  validated: boolean;
  /** The source it registered from (`sourceKey`), charged for it until it is gone. */
  readonly source: string;
  /** Bytes charged for it against the memory budget. */
  readonly bytes: number;
  /** Registered at; an unvalidated member is dropped `VALIDATE_WITHIN_MS` later. */
  readonly joinedAt: number;
  /**
   * A token holder asked from another address (its NAT re-mapped it): that address got a
   * fresh token, and becomes the member's once a request carries that token from there.
   */
  rebind: { readonly endpoint: Endpoint; readonly token: Uint8Array } | undefined;
  /** The last request with its token from its endpoint (see `MEMBER_SILENCE_MS`). */
  lastSeenAt: number;
  /** The others were told that it did not ack its peers (`PEERS_ACK_WITHIN_MS`). */
  reportedSilent: boolean;
  /** The newest `peers` version it acked (0: none yet). */
  ackedVersion: number;
  peersTries: number;
  peersNextAt: number;
  /** The lobby version it was last sent (a validated member is told each newer one once). */
  lobbySent: number;
  /** Its `peers` entry (`peerEntry`), made when first sent; charged in `memberBytes`. */
  peerEntry: Uint8Array | undefined;
}

interface Session {
  readonly name: string;
  /** Unique per session ever made here: relay allocations belong to it, not to the name. */
  readonly instance: number;
  /** The host's source, charged for the session until it is forgotten. */
  readonly source: string;
  /** Bytes charged for the session itself (members are charged on their own). */
  readonly bytes: number;
  readonly maxPlayers: number;
  readonly punchKey: Uint8Array;
  readonly members: Member[];
  state: 'waiting' | 'started';
  startedAt: number;
  /**
   * The host asked to keep the session open this long after the start (revision 1 `keepOpen`):
   * late joiners and rejoining members are taken and punched to everyone present. 0: closed
   * at the start.
   */
  readonly keepOpenMs: number;
  /** A validated member silent this long is gone (`MEMBER_SILENCE_MS` unless the host set it). */
  readonly silenceMs: number;
  /** Version of the peer list; each change after the start (join, rejoin, leave) makes a new one. */
  peersVersion: number;
  lobbyVersion: number;
  /** The lobby changed and its members have not all been told (`#lobbyChanged`). */
  lobbyPushDue: boolean;
  /** Waiting: expiry (refreshed by the host). Started: when it is forgotten. */
  deadline: number;
  /** The time of this session's live entry in the timer heap (Infinity: none). */
  timerAt: number;
  /** Set when the session left the table, so stale timer entries are skipped. */
  gone: boolean;
}

interface TimerEntry {
  readonly at: number;
  readonly session: Session;
}

type Request = Extract<
  V2Message,
  {
    type: 'host' | 'join' | 'start' | 'leave' | 'close' | 'keepalive' | 'peers_ack';
  }
>;

/**
 * A dual-stack server sees IPv4 clients as `::ffff:a.b.c.d`; peers on IPv4-only sockets
 * cannot send to that form, so the wire carries the plain IPv4 address.
 */
function wireEndpoint(ep: Endpoint): Endpoint {
  const address = unmappedAddress(ep.address);
  return address === ep.address ? ep : { address, port: ep.port };
}

/** The member as its peers get it, encoded once (again after it moved: `rebind`). */
function peerEntry(m: Member): Uint8Array {
  m.peerEntry ??= encodePeerEntry({
    name: m.name,
    nickname: m.nickname,
    isHost: m.isHost,
    publicEndpoint: wireEndpoint(m.endpoint),
    candidates: m.candidates,
    ...(m.nat === 'unknown' ? {} : { nat: m.nat }),
  });
  return m.peerEntry;
}

function validatedCount(session: Session): number {
  let n = 0;
  for (const m of session.members) if (m.validated) n++;
  return n;
}

/** Bytes charged for a member against the memory budget (`MEMORY_COSTS`). */
function memberBytes(msg: Extract<V2Message, { type: 'host' | 'join' }>): number {
  let text = msg.name.length + msg.nickname.length;
  for (const c of msg.candidates) text += c.address.length;
  return (
    MEMORY_COSTS.v2Member +
    MEMORY_COSTS.v2Candidate * msg.candidates.length +
    MEMORY_COSTS.v2TextByte * text +
    MEMORY_COSTS.v2PeerEntry +
    MEMORY_COSTS.v2PeerEntryTextByte * text
  );
}

function relayMember(m: Member): {
  name: string;
  tokenKey: string;
  endpoint: Endpoint;
  isHost: boolean;
} {
  return { name: m.name, tokenKey: bytesKey(m.token), endpoint: m.endpoint, isHost: m.isHost };
}

function sameToken(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** The session takes late joiners and rejoins now (started with a `keepOpen`). */
function isOpen(session: Session): boolean {
  return session.state === 'started' && session.keepOpenMs > 0;
}

function hasAcked(session: Session, m: Member): boolean {
  return m.ackedVersion >= session.peersVersion;
}

export class V2Sessions implements ProtocolHandler {
  readonly #outbox: Outbox;
  readonly #counters: ServerCounters;
  readonly #randomBytes: (bytes: number) => Uint8Array;
  readonly #ttlMs: number;
  readonly #maxSessions: number;
  readonly #maxPlayersCap: number;
  readonly #autostart: boolean;
  readonly #onLifecycle: ((event: SessionLifecycleEvent) => void) | undefined;
  readonly #onMember: ((event: MemberLifecycleEvent) => void) | undefined;
  /** The `host`/`join` being handled: its refusal is reported as a `refused` member event. */
  #registering: { readonly session: string; readonly name: string } | undefined;
  /** Undefined on a server that does not relay. */
  readonly #relay: RelayAllocations | undefined;
  #instances = 0;
  /** Sessions in the table that started (the rest wait), kept as they change: O(1) to read. */
  #startedOpen = 0;
  /** Members of the sessions in the table, validated or not, kept as they change. */
  #membersOpen = 0;
  /** Set by `drain`: `host` and `join` are refused, started sessions go on. */
  #draining = false;
  /**
   * Members of recently started sessions by token (hex), for relay requests. Insertion
   * order is expiry order (the window is constant), so expiry pops from the front.
   */
  readonly #started = new Map<
    string,
    { readonly session: Session; readonly member: Member; readonly until: number }
  >();
  readonly #sessions = new Map<string, Session>();
  /**
   * Names of recently started sessions: until when, and the addresses (IPs) of their members.
   * Insertion order is expiry order.
   */
  readonly #recentlyStarted = new Map<
    string,
    { readonly until: number; readonly addresses: ReadonlySet<string> }
  >();
  /**
   * Min-heap of per-session wakeups: a timeout touches only the sessions that are due, so
   * a million idle lobbies cost nothing per tick. Entries go stale (a refreshed expiry, a
   * forgotten session); a stale entry costs one pop.
   */
  readonly #timers: TimerEntry[] = [];
  /** Size of the datagram being handled: the budget of an `error` answering it. */
  #requestBytes = 0;
  /** Time of the datagram being handled (for the error bucket of its source). */
  #now = 0;
  readonly #limits: SourceLimits | undefined;

  constructor(options: V2SessionsOptions) {
    this.#outbox = options.outbox;
    this.#counters = options.counters;
    this.#randomBytes = options.randomBytes;
    this.#ttlMs = options.sessionTtlMs;
    this.#maxSessions = options.maxSessions;
    this.#maxPlayersCap = Math.min(options.maxPlayersCap, MAX_PLAYERS_WIRE);
    this.#autostart = options.autostart;
    this.#onLifecycle = options.onLifecycle;
    this.#onMember = options.onMember;
    this.#limits = options.limits;
    this.#relay =
      options.relay === false || options.relayIo === undefined
        ? undefined
        : new RelayAllocations({
            outbox: options.outbox,
            io: options.relayIo,
            counters: options.counters,
            randomBytes: options.randomBytes,
            ports: options.relayPorts ?? DEFAULT_SERVER_SETTINGS.relayPorts,
            ...(options.relayLimits === undefined ? {} : { limits: options.relayLimits }),
          });
  }

  #lifecycle(type: SessionLifecycleEvent['type'], session: Session, reason?: string): void {
    this.#onLifecycle?.({
      type,
      protocol: 'v2',
      key: session.name,
      maxPlayers: session.maxPlayers,
      members: session.members.length,
      reason,
    });
  }

  #memberEvent(
    type: MemberLifecycleEvent['type'],
    session: string,
    name: string | undefined,
    reason: string | undefined,
    at: Endpoint,
  ): void {
    this.#onMember?.({
      type,
      protocol: 'v2',
      key: session,
      name,
      reason,
      address: at.address,
      port: at.port,
    });
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Sessions in the table that started (lingering for acks, at most `STARTED_LINGER_MS`). */
  get startedCount(): number {
    return this.#startedOpen;
  }

  /** Sessions in the table still waiting for players. */
  get waitingCount(): number {
    return this.#sessions.size - this.#startedOpen;
  }

  /** Members of the sessions in the table (unvalidated ones included). */
  get memberCount(): number {
    return this.#membersOpen;
  }

  /** True once `drain` was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /** The relay (its allocations and ports), or undefined on a server that does not relay. */
  get relay(): RelayAllocations | undefined {
    return this.#relay;
  }

  handle(now: number, from: Endpoint, data: Uint8Array): void {
    this.#requestBytes = data.length;
    this.#now = now;
    const decoded = decodeV2(data);
    if (!decoded.ok) {
      if (decoded.code === undefined || decoded.requestId === undefined) {
        countRejection(this.#counters, 'v2_malformed');
        return;
      }
      countRejection(
        this.#counters,
        decoded.code === 'unsupported_version' ? 'v2_unsupported_version' : 'v2_bad_request',
      );
      this.#error(from, decoded.requestId, decoded.code, decoded.error);
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
        this.#request(now, from, msg);
        return;
      case 'relay_allocate':
        this.#relayAllocate(now, from, msg);
        return;
      case 'relay_bind':
        // Binds go to a relay port, never to the server's own.
        countRejection(this.#counters, 'v2_relay_bind_to_server');
        return;
      default:
        // Server pushes or peer messages sent to the server: never answer (no reflection loops).
        countRejection(this.#counters, 'v2_unexpected_type');
    }
  }

  #request(now: number, from: Endpoint, msg: Request): void {
    switch (msg.type) {
      case 'host':
      case 'join':
        this.#registering = { session: msg.session, name: msg.name };
        try {
          if (msg.type === 'host') this.#host(now, from, msg);
          else this.#join(now, from, msg);
        } finally {
          this.#registering = undefined;
        }
        return;
      default:
        break;
    }
    const session = this.#sessions.get(msg.session);
    if (session === undefined) {
      // A game that ends long after its start says goodbye to a session the table forgot:
      // its relay allocations go with it.
      if (msg.type === 'leave' || msg.type === 'close') {
        this.#relay?.closeByToken(bytesKey(msg.token), from, msg.type === 'close');
      }
      this.#refuse(from, msg.requestId, 'session_not_found', 'No such session.');
      return;
    }
    const member = this.#memberByToken(session, msg.token, from);
    if (member === undefined) {
      this.#refuse(from, msg.requestId, 'not_authorized', 'Token is not a member of this session.');
      return;
    }
    const here = sameEndpoint(member.endpoint, from);
    if (here) member.lastSeenAt = now;
    switch (msg.type) {
      case 'start':
        if (!member.isHost) {
          this.#refuse(from, msg.requestId, 'not_authorized', 'Only the host can start.');
          return;
        }
        if (!here) {
          this.#rebind(from, msg.requestId, session, member);
          return;
        }
        this.#send(from, encodeV2({ type: 'ok', requestId: msg.requestId }));
        if (this.#validate(now, session, member)) return;
        if (session.state === 'waiting') this.#end(now, session, 'exchange_peers');
        return;
      case 'close':
        if (!member.isHost) {
          this.#refuse(from, msg.requestId, 'not_authorized', 'Only the host can close.');
          return;
        }
        this.#send(from, encodeV2({ type: 'ok', requestId: msg.requestId }));
        this.#end(
          now,
          session,
          session.state === 'waiting' ? 'host_closed' : 'host_closed_started',
          msg.reason || 'Session closed by the host.',
          member,
        );
        return;
      case 'leave':
        this.#send(from, encodeV2({ type: 'ok', requestId: msg.requestId }));
        if (member.isHost && session.state === 'waiting') {
          this.#end(now, session, 'host_left', 'The host left.', member);
          return;
        }
        // An open session is the host's game: it ends with the host, as a lobby does.
        if (member.isHost && isOpen(session)) {
          this.#end(now, session, 'host_left_open', 'The host left.', member);
          return;
        }
        this.#memberGone(now, session, member, 'left');
        return;
      case 'keepalive':
        if (!here) {
          this.#rebind(from, msg.requestId, session, member);
          return;
        }
        // Autostarted by this member's arrival: the `lobby` and `peers` pushes answer it.
        if (this.#validate(now, session, member)) return;
        if (session.state === 'waiting') {
          if (member.isHost) session.deadline = now + this.#ttlMs;
          member.lobbySent = session.lobbyVersion;
          this.#send(from, sealPush(member.token, this.#lobbyBody(session, msg.requestId)));
        } else this.#sendPeers(now, session, member, msg.requestId);
        return;
      case 'peers_ack':
        this.#send(from, encodeV2({ type: 'ok', requestId: msg.requestId }));
        // A lobby has no peers to ack: an ack before the start must neither spare the member
        // its `peers` pushes nor make the lobby vanish (uncounted) once every member sent one.
        if (session.state !== 'started') return;
        // An ack without a version (revision 0) acks the list the member was last sent.
        member.ackedVersion = Math.max(
          member.ackedVersion,
          Math.min(msg.version ?? session.peersVersion, session.peersVersion),
        );
        this.#forgetIfAllAcked(now, session);
        return;
    }
  }

  #relayAllocate(
    now: number,
    from: Endpoint,
    msg: Extract<V2Message, { type: 'relay_allocate' }>,
  ): void {
    const started = this.#started.get(bytesKey(msg.token));
    const session = started?.session.name === msg.session ? started.session : undefined;
    const member = session === undefined ? undefined : started?.member;
    const peer = session?.members.find((m) => m.name === msg.peer && m !== member);
    const refusal = this.#relayRefusal(from, member, peer);
    const relay = this.#relay;
    if (refusal || !session || !member || !peer || !relay) {
      const [code, message] = refusal ?? ['not_authorized', 'No started session has this token.'];
      this.#refuse(from, msg.requestId, code, message);
      return;
    }
    const before = relay.size;
    const refused = relay.allocate(now, {
      instance: session.instance,
      maxPlayers: session.maxPlayers,
      self: relayMember(member),
      peer: relayMember(peer),
      requestId: msg.requestId,
    });
    if (refused !== undefined) {
      // Logged by the shell once per interval with the counts by reason (a flood of asks
      // would otherwise write a line per request).
      this.#refuse(from, msg.requestId, 'relay_unavailable', RELAY_REFUSAL_MESSAGES[refused]);
    } else if (relay.size > before) {
      this.#memberEvent('relayed', session.name, member.name, peer.name, from);
    }
  }

  #relayRefusal(
    from: Endpoint,
    member: Member | undefined,
    peer: Member | undefined,
  ): [ErrorCode, string] | undefined {
    if (this.#relay === undefined) return ['relay_unavailable', 'This server does not relay.'];
    if (member === undefined) return ['not_authorized', 'No started session has this token.'];
    // The relay sends to the member's validated endpoint, so only that endpoint may ask.
    if (!sameEndpoint(member.endpoint, from)) {
      return ['not_authorized', 'Ask from the address the session knows.'];
    }
    if (peer === undefined) return ['bad_request', 'No such peer in this session.'];
    return undefined;
  }

  /** While the server drains, every `host`/`join` is refused (`server_full`, a clear message). */
  #refuseDraining(from: Endpoint, requestId: number): boolean {
    if (!this.#draining) return false;
    countRejection(this.#counters, 'v2_draining');
    this.#error(from, requestId, 'server_full', 'The server is shutting down.');
    return true;
  }

  /** Refuses a `host`/`join` whose session, name or nickname is empty or too long. */
  #validIdentity(from: Endpoint, msg: Extract<V2Message, { type: 'host' | 'join' }>): boolean {
    if (
      isValidField(msg.session, MAX_SESSION_BYTES) &&
      isValidField(msg.name, MAX_NAME_BYTES) &&
      isValidField(msg.nickname, MAX_NICKNAME_BYTES, true)
    ) {
      return true;
    }
    this.#refuse(from, msg.requestId, 'bad_request', 'Session and name must not be empty.');
    return false;
  }

  /** Refuses a `host`/`join` whose candidates are not all unicast IP literals. */
  #validCandidates(from: Endpoint, msg: Extract<V2Message, { type: 'host' | 'join' }>): boolean {
    if (msg.candidates.every(isUnicastEndpoint)) return true;
    this.#refuse(from, msg.requestId, 'bad_request', 'Candidates must be unicast IP addresses.');
    return false;
  }

  #host(now: number, from: Endpoint, msg: Extract<V2Message, { type: 'host' }>): void {
    if (this.#refuseDraining(from, msg.requestId)) return;
    if (!this.#validIdentity(from, msg) || !this.#registeredFits(from, msg.requestId)) return;
    if (!this.#validCandidates(from, msg)) return;
    if (msg.maxPlayers < MIN_PLAYERS || msg.maxPlayers > this.#maxPlayersCap) {
      this.#refuse(
        from,
        msg.requestId,
        'bad_request',
        `maxPlayers must be ${MIN_PLAYERS}..${this.#maxPlayersCap}.`,
      );
      return;
    }
    const silenceS = msg.silenceS ?? 0;
    if (silenceS !== 0 && (silenceS < MIN_SILENCE_S || silenceS > MAX_SILENCE_S)) {
      this.#refuse(
        from,
        msg.requestId,
        'bad_request',
        `silence must be 0 (default) or ${MIN_SILENCE_S}..${MAX_SILENCE_S} s.`,
      );
      return;
    }
    const existing = this.#sessions.get(msg.session);
    if (existing !== undefined) {
      const host = existing.members.find((m) => m.isHost);
      // A retransmitted `host` (its reply was lost): same answer, same token.
      if (host !== undefined && host.name === msg.name && sameEndpoint(host.endpoint, from)) {
        this.#registered(from, msg.requestId, existing, host);
        return;
      }
      if (existing.state === 'waiting' || isOpen(existing)) {
        this.#refuse(from, msg.requestId, 'session_exists', 'Tried to create existing session.');
        return;
      }
      // A started session only lingers for late peer and relay requests: its name is free
      // for the next game (its relay channels live on without it).
      this.#end(now, existing, 'name_reused');
    }
    if (this.#sessions.size >= this.#maxSessions) {
      this.#refuse(from, msg.requestId, 'server_full', 'The server holds too many sessions.');
      return;
    }
    const source = sourceKey(from.address);
    const sessionBytes = MEMORY_COSTS.v2Session + MEMORY_COSTS.v2TextByte * msg.session.length;
    const hostBytes = memberBytes(msg);
    const admitted = this.#admit(
      from,
      msg.requestId,
      sessionBytes + hostBytes,
      (limits) => limits.openV2Session(now, source),
      'Too many lobbies from your address.',
    );
    if (!admitted) return;
    const host = this.#member(now, msg, true, from, source, hostBytes);
    const session: Session = {
      name: msg.session,
      instance: ++this.#instances,
      source,
      bytes: sessionBytes,
      maxPlayers: msg.maxPlayers,
      punchKey: this.#randomBytes(PUNCH_KEY_BYTES),
      members: [host],
      state: 'waiting',
      startedAt: Number.NaN,
      keepOpenMs: (msg.keepOpenS ?? 0) * 1000,
      silenceMs: silenceS === 0 ? MEMBER_SILENCE_MS : silenceS * 1000,
      peersVersion: 0,
      lobbyVersion: 1,
      lobbyPushDue: false,
      deadline: now + this.#ttlMs,
      timerAt: Number.POSITIVE_INFINITY,
      gone: false,
    };
    this.#sessions.set(msg.session, session);
    this.#membersOpen++;
    // A new game under the name: joiners are for it now.
    this.#recentlyStarted.delete(msg.session);
    this.#counters.sessionsCreated++;
    this.#lifecycle('created', session);
    this.#schedule(session, Math.min(session.deadline, now + VALIDATE_WITHIN_MS));
    this.#registered(from, msg.requestId, session, host);
  }

  /**
   * Reserves `bytes` of the memory budget, then the source's quota (`take`); on either refusal
   * answers `server_full` (releasing the bytes) and returns false. Always true without limits.
   */
  #admit(
    from: Endpoint,
    requestId: number,
    bytes: number,
    take: (limits: SourceLimits) => boolean,
    quotaMessage: string,
  ): boolean {
    const limits = this.#limits;
    if (limits === undefined) return true;
    if (!limits.budget.reserve(bytes)) {
      this.#refuse(from, requestId, 'server_full', 'The server is out of memory for lobbies.');
      return false;
    }
    if (!take(limits)) {
      limits.budget.release(bytes);
      countRejection(this.#counters, 'v2_source_quota');
      this.#refuse(from, requestId, 'server_full', quotaMessage);
      return false;
    }
    return true;
  }

  #join(now: number, from: Endpoint, msg: Extract<V2Message, { type: 'join' }>): void {
    if (this.#refuseDraining(from, msg.requestId)) return;
    if (!this.#validIdentity(from, msg) || !this.#registeredFits(from, msg.requestId)) return;
    const session = this.#sessions.get(msg.session);
    if (session === undefined) {
      const started = this.#recentlyStarted.get(msg.session);
      // A player of the last game under this name is likely back for the next one, whose
      // host may simply not be there yet: it waits as for any missing host. Anyone else came
      // too late and is told so at once.
      if (started !== undefined && started.until > now && !started.addresses.has(from.address)) {
        this.#refuse(from, msg.requestId, 'session_full', 'The session has already started.');
      } else {
        this.#refuse(from, msg.requestId, 'session_not_found', 'No such session.');
      }
      return;
    }
    const same = session.members.find((m) => m.name === msg.name);
    if (same !== undefined) {
      if (sameEndpoint(same.endpoint, from)) {
        this.#registered(from, msg.requestId, session, same);
        return;
      }
      if (!this.#mayRejoin(now, session, same, from)) {
        this.#refuse(from, msg.requestId, 'name_taken', 'Client already registered.');
        return;
      }
    }
    if (session.state === 'started' && !isOpen(session)) {
      this.#refuse(from, msg.requestId, 'session_full', 'The session has already started.');
      return;
    }
    // Unvalidated members do not hold slots against validated ones: the lobby is full when
    // maxPlayers members showed their address. Up to maxPlayers more may wait to show theirs;
    // beyond that the one waiting longest makes room (forged joins never validate).
    const validated = validatedCount(session) - (same?.validated ? 1 : 0);
    if (validated >= session.maxPlayers) {
      this.#refuse(from, msg.requestId, 'session_full', 'Session full.');
      return;
    }
    // Checked last of what a join asks: the costliest check, and a flood of joins to lobbies
    // that are not there (or are full) should not pay for it.
    if (!this.#validCandidates(from, msg)) return;
    const source = sourceKey(from.address);
    const bytes = memberBytes(msg);
    const admitted = this.#admit(
      from,
      msg.requestId,
      bytes,
      (limits) => limits.addV2Member(now, source),
      'Too many players from your address.',
    );
    if (!admitted) return;
    // The member is back (its game restarted, or its NAT gave it a new address): the old
    // entry goes, and the new one is punched to everyone once it validates.
    if (same !== undefined) this.#memberGone(now, session, same, 'rejoined');
    if (session.members.length >= 2 * session.maxPlayers) {
      const oldest = session.members.find((m) => !m.validated && !m.isHost);
      if (oldest !== undefined) {
        countRejection(this.#counters, 'v2_unvalidated_evicted');
        this.#removeMember(session, oldest);
      }
    }
    const member = this.#member(now, msg, false, from, source, bytes);
    session.members.push(member);
    this.#membersOpen++;
    this.#schedule(session, now + VALIDATE_WITHIN_MS);
    this.#registered(from, msg.requestId, session, member);
  }

  /**
   * A `join` under the name of a member of an open session, from another address, replaces
   * that member (docs/protocol-v2.md §4, "Rejoins") when it comes from the member's own IP
   * address (its game restarted on another port) or the member has been silent for a
   * keepalive period (it crashed, or its network changed). Otherwise the name is taken: a
   * stranger cannot push a live player out by joining under its name.
   */
  #mayRejoin(now: number, session: Session, same: Member, from: Endpoint): boolean {
    if (!isOpen(session) || same.isHost) return false;
    if (unmappedAddress(same.endpoint.address) === unmappedAddress(from.address)) return true;
    return now - same.lastSeenAt >= session.silenceMs / KEEPALIVES_PER_SILENCE;
  }

  /**
   * A member of a started session is gone (`leave`, silence, or replaced by its rejoin):
   * the others stop punching it and its relay allocations close. An open session's peer
   * list changes with it; a closed one may now be forgotten.
   */
  #memberGone(
    now: number,
    session: Session,
    member: Member,
    why: 'left' | 'silent' | 'rejoined',
  ): void {
    this.#removeMember(session, member);
    if (member.validated)
      this.#memberEvent('left', session.name, member.name, why, member.endpoint);
    if (session.state === 'waiting') {
      if (member.validated) this.#lobbyChanged(now, session);
      return;
    }
    if (!member.validated) return;
    // The others may be punching it: tell them it is gone, not behind a NAT. A rejoining
    // member is not gone: the new peer list moves it.
    if (why !== 'rejoined') this.#peerLeft(session, member, why);
    this.#relay?.closeMember(session.instance, member.name);
    if (isOpen(session)) {
      if (why === 'rejoined') return;
      session.peersVersion++;
    }
    this.#forgetIfAllAcked(now, session);
  }

  /**
   * The member whose token this is. A rebind token is good only from the address it was
   * sent to, and moves the member there: that address has shown that it receives.
   */
  #memberByToken(session: Session, token: Uint8Array, from: Endpoint): Member | undefined {
    for (const m of session.members) {
      if (sameToken(m.token, token)) return m;
      const rebind = m.rebind;
      if (rebind === undefined || !sameToken(rebind.token, token)) continue;
      if (!sameEndpoint(rebind.endpoint, from)) return undefined;
      m.endpoint = rebind.endpoint;
      m.peerEntry = undefined;
      m.token = rebind.token;
      m.rebind = undefined;
      return m;
    }
    return undefined;
  }

  /**
   * A token holder asks from an address that is not the member's. It may be the member
   * after its NAT re-mapped it, or anyone who knows the token forging a source address: so
   * the new address gets only a fresh token (a reply no larger than the request), and
   * becomes the member's when that token comes back from it.
   */
  #rebind(from: Endpoint, requestId: number, session: Session, member: Member): void {
    const token = this.#randomBytes(TOKEN_BYTES);
    member.rebind = { endpoint: from, token };
    this.#sendRegistered(from, requestId, session, member, token);
  }

  /**
   * Marks `member` as receiving at its address: it enters the lobby, and a full lobby
   * autostarts. Returns true if that started the session.
   */
  #validate(now: number, session: Session, member: Member): boolean {
    if (member.validated) return false;
    member.validated = true;
    member.lastSeenAt = now;
    this.#memberEvent(
      'joined',
      session.name,
      member.name,
      session.state === 'started' ? 'late' : undefined,
      member.endpoint,
    );
    if (session.state !== 'waiting') {
      // A late joiner (or a rejoin) in an open session: everyone gets the new list.
      this.#peersChanged(now, session);
      return false;
    }
    this.#lobbyChanged(now, session);
    const full = this.#autostart && validatedCount(session) >= session.maxPlayers;
    if (full) {
      // Everyone sees the full lobby before the peers.
      this.#pushLobby(session);
      this.#end(now, session, 'autostart');
    }
    return full;
  }

  #member(
    now: number,
    msg: Extract<V2Message, { type: 'host' | 'join' }>,
    isHost: boolean,
    endpoint: Endpoint,
    source: string,
    bytes: number,
  ): Member {
    return {
      name: msg.name,
      nickname: msg.nickname,
      isHost,
      endpoint,
      candidates: msg.candidates,
      nat: msg.nat ?? 'unknown',
      revision: msg.revision ?? 0,
      source,
      bytes,
      token: this.#randomBytes(TOKEN_BYTES),
      validated: false,
      joinedAt: now,
      rebind: undefined,
      lastSeenAt: now,
      reportedSilent: false,
      ackedVersion: 0,
      peersTries: 0,
      peersNextAt: Number.POSITIVE_INFINITY,
      lobbySent: 0,
      peerEntry: undefined,
    };
  }

  /** Moves a waiting session (counted and reported by `#end`) to started and sends peers. */
  #start(now: number, session: Session): void {
    const members = session.members.slice();
    session.state = 'started';
    this.#startedOpen++;
    session.startedAt = now;
    this.#rememberStarted(now, session);
    session.deadline = now + (session.keepOpenMs > 0 ? session.keepOpenMs : STARTED_LINGER_MS);
    this.#pushPeers(now, session, members);
  }

  /**
   * A new peer list (version): each validated member gets it, re-pushed until acked, and may
   * ask the relay towards anyone on it for `RELAY_ASK_WINDOW_MS` from now.
   */
  #pushPeers(now: number, session: Session, members: readonly Member[]): void {
    session.peersVersion++;
    if (this.#relay !== undefined) {
      const until = now + RELAY_ASK_WINDOW_MS;
      for (const member of members) {
        // Re-inserted, so that the map stays in expiry order.
        const key = bytesKey(member.token);
        this.#started.delete(key);
        this.#started.set(key, { session, member, until });
      }
    }
    for (const m of members) {
      m.peersTries = 1;
      m.peersNextAt = now + PEERS_RETRY_FIRST_MS;
      this.#sendPeers(now, session, m, 0);
    }
    this.#schedule(session, now + PEERS_RETRY_FIRST_MS);
  }

  /** An open session's membership changed after the start: everyone present gets the new list. */
  #peersChanged(now: number, session: Session): void {
    this.#pushPeers(
      now,
      session,
      session.members.filter((m) => m.validated),
    );
  }

  /** Sends `member` every other validated member, split over as many datagrams as needed. */
  #sendPeers(now: number, session: Session, member: Member, requestId: number): void {
    const entries: Uint8Array[] = [];
    for (const m of session.members) if (m !== member && m.validated) entries.push(peerEntry(m));
    const head = {
      requestId,
      punchKey: session.punchKey,
      token: member.token,
      observed: wireEndpoint(member.endpoint),
      total: entries.length,
      ...(member.revision >= 1
        ? {
            version: session.peersVersion,
            openS: isOpen(session) ? Math.max(0, Math.ceil((session.deadline - now) / 1000)) : 0,
          }
        : {}),
    };
    let first = 0;
    let size = PEERS_FIXED_BYTES;
    const flush = (end: number): void => {
      this.#send(member.endpoint, encodeV2Peers({ ...head, first }, entries.slice(first, end)));
      first = end;
      size = PEERS_FIXED_BYTES;
    };
    for (const [i, entry] of entries.entries()) {
      if (i > first && size + entry.length > MAX_DATAGRAM_BYTES) flush(i);
      size += entry.length;
    }
    flush(entries.length);
  }

  #forgetIfAllAcked(now: number, session: Session): void {
    // An open session stays for late joiners until its keepOpen ends or the host closes it.
    if (session.keepOpenMs > 0) return;
    if (session.members.every((m) => hasAcked(session, m))) this.#end(now, session, 'all_acked');
  }

  /** The lobby without its tag: `sealPush` tags it for each member with that member's token. */
  #lobbyBody(session: Session, requestId: number): Uint8Array {
    const nicknames: string[] = [];
    for (const m of session.members) if (m.validated) nicknames.push(m.nickname);
    return encodePushBody({
      type: 'lobby',
      requestId,
      version: session.lobbyVersion,
      maxPlayers: session.maxPlayers,
      nicknames,
    });
  }

  /**
   * The membership changed. The members are told by a timer due now, which the driver runs
   * once it has handled the datagrams that arrived with this one: a lobby that fills in a
   * burst costs a push per member per burst, not one per member per arrival (32 players:
   * 32 pushes, not 496).
   */
  #lobbyChanged(now: number, session: Session): void {
    session.lobbyVersion++;
    if (session.lobbyPushDue) return;
    session.lobbyPushDue = true;
    this.#schedule(session, now);
  }

  /** Pushes the lobby to every validated member that has not had this version. */
  #pushLobby(session: Session): void {
    session.lobbyPushDue = false;
    let body: Uint8Array | undefined;
    for (const m of session.members) {
      if (!m.validated || m.lobbySent === session.lobbyVersion) continue;
      body ??= this.#lobbyBody(session, 0);
      m.lobbySent = session.lobbyVersion;
      this.#send(m.endpoint, sealPush(m.token, body));
    }
  }

  /** Tells the other validated members of a started session that `gone` is gone. */
  #peerLeft(session: Session, gone: Member, why: PeerLeftWhy): void {
    const body = encodePushBody({ type: 'peer_left', requestId: 0, name: gone.name, why });
    for (const m of session.members) {
      if (m.validated && m !== gone) this.#send(m.endpoint, sealPush(m.token, body));
    }
  }

  /**
   * The one way a session ends or leaves the table (`V2_SESSION_ENDINGS`): a waiting session
   * counts its ending's counter and emits its event, once; a started one only goes. Then it
   * starts (`peers`), or every validated member except `except` is told `closed` with
   * `reason` (its relay allocations close) and it is forgotten.
   */
  #end(now: number, session: Session, ending: V2SessionEnding, reason = '', except?: Member): void {
    const row: V2SessionEndingRow = V2_SESSION_ENDINGS[ending];
    if (session.gone) return;
    if (session.state !== row.from) {
      throw new Error(`v2 session ending ${ending} from state ${session.state}`);
    }
    // Members that never showed they receive at their address are not exchanged (nor counted
    // in the `started` event).
    if (row.told === 'peers') {
      for (const m of session.members.filter((x) => !x.validated)) this.#removeMember(session, m);
    }
    if (row.counter !== null) {
      this.#counters[row.counter]++;
      this.#lifecycle(row.state, session, row.told === 'peers' ? ending : reason);
    }
    if (row.told === 'peers') {
      this.#start(now, session);
      return;
    }
    if (row.told !== null) {
      this.#relay?.closeSession(session.instance);
      const body = encodePushBody({ type: 'closed', requestId: 0, code: row.told, reason });
      // A code added by a revision goes only to members of that revision: an older decoder
      // refuses an unknown code (the whole datagram), so they hear what they always heard.
      const older =
        row.told === 'server_shutdown'
          ? encodePushBody({ type: 'closed', requestId: 0, code: 'session_closed', reason })
          : body;
      for (const m of session.members) {
        if (m.validated && m !== except)
          this.#send(m.endpoint, sealPush(m.token, m.revision >= 1 ? body : older));
      }
    }
    this.#forget(session);
  }

  /**
   * A `registered` answer to an unvalidated source must stay within `ERROR_REPLY_FACTOR` ×
   * the request: a short `host`/`join` from a long (IPv6) source is refused with
   * `bad_request` instead; clients pad both to `MIN_REGISTER_REQUEST_BYTES`.
   */
  #registeredFits(from: Endpoint, requestId: number): boolean {
    const reply = REGISTERED_FIXED_BYTES + wireEndpoint(from).address.length;
    if (reply <= ERROR_REPLY_FACTOR * this.#requestBytes) return true;
    this.#refuse(from, requestId, 'bad_request', 'Pad host/join to 64 bytes (protocol-v2.md §2).');
    return false;
  }

  #registered(to: Endpoint, requestId: number, session: Session, member: Member): void {
    this.#sendRegistered(to, requestId, session, member, member.token);
  }

  /** `registered` with `token`; a revision ≥ 1 member also learns how often to keepalive. */
  #sendRegistered(
    to: Endpoint,
    requestId: number,
    session: Session,
    member: Member,
    token: Uint8Array,
  ): void {
    const observed = wireEndpoint(to);
    const keepalive =
      member.revision >= 1
        ? { keepaliveMs: Math.round(session.silenceMs / KEEPALIVES_PER_SILENCE) }
        : {};
    this.#send(to, encodeV2({ type: 'registered', requestId, token, observed, ...keepalive }));
  }

  #refuse(to: Endpoint, requestId: number, code: ErrorCode, message: string): void {
    countRejection(this.#counters, `v2_${code}`);
    const asking = this.#registering;
    if (asking !== undefined) this.#memberEvent('refused', asking.session, asking.name, code, to);
    this.#error(to, requestId, code, message);
  }

  /** The message is cut so that the reply is at most `ERROR_REPLY_FACTOR` × the request. */
  #error(to: Endpoint, requestId: number, code: ErrorCode, message: string): void {
    const room = ERROR_REPLY_FACTOR * this.#requestBytes - ERROR_FIXED_BYTES - code.length;
    // Not even the code fits (a bare 9-byte header): no answer, not an amplified one.
    if (room < 0) {
      countRejection(this.#counters, 'v2_reply_ratio');
      return;
    }
    if (this.#limits !== undefined && !this.#limits.allowError(this.#now, to.address)) {
      countRejection(this.#counters, 'v2_error_budget');
      return;
    }
    const cut = truncateUtf8(message, Math.max(0, room));
    this.#send(to, encodeV2({ type: 'error', requestId, code, message: cut }));
  }

  #send(to: Endpoint, data: Uint8Array): void {
    this.#outbox.send(to, data);
  }

  #rememberStarted(now: number, session: Session): void {
    const name = session.name;
    // Expired names go first: the map holds at most the names started within the window.
    for (const [old, { until }] of this.#recentlyStarted) {
      if (until > now) break;
      this.#recentlyStarted.delete(old);
    }
    this.#recentlyStarted.delete(name);
    const addresses = new Set(session.members.map((m) => m.endpoint.address));
    this.#recentlyStarted.set(name, { until: now + STARTED_NAME_MEMORY_MS, addresses });
  }

  #forget(session: Session): void {
    if (session.gone) return;
    session.gone = true;
    if (this.#sessions.get(session.name) === session) {
      this.#sessions.delete(session.name);
      if (session.state === 'started') this.#startedOpen--;
      this.#membersOpen -= session.members.length;
    }
    const limits = this.#limits;
    if (limits === undefined) return;
    limits.budget.release(session.bytes);
    limits.closeV2Session(session.source);
    for (const m of session.members) {
      limits.budget.release(m.bytes);
      limits.removeV2Member(m.source);
    }
  }

  /** Takes `member` out of a live session and releases what it was charged. */
  #removeMember(session: Session, member: Member): void {
    const i = session.members.indexOf(member);
    if (i === -1) return;
    session.members.splice(i, 1);
    if (!session.gone) this.#membersOpen--;
    this.#limits?.budget.release(member.bytes);
    this.#limits?.removeV2Member(member.source);
  }

  /** Makes sure the session is woken at `at` (or earlier). */
  #schedule(session: Session, at: number): void {
    if (at >= session.timerAt || !Number.isFinite(at)) return;
    session.timerAt = at;
    heapPush(this.#timers, { at, session });
  }

  nextDeadline(): number {
    const sessions = this.#timers[0]?.at ?? Number.POSITIVE_INFINITY;
    const asks = this.#started.values().next().value?.until ?? Number.POSITIVE_INFINITY;
    return Math.min(sessions, asks, this.#relay?.nextDeadline() ?? Number.POSITIVE_INFINITY);
  }

  handleTimeout(now: number): void {
    this.#relay?.handleTimeout(now);
    for (const [token, { until }] of this.#started) {
      if (until > now) break;
      this.#started.delete(token);
    }
    // Bounded by the heap size: every pop removes an entry, re-scheduling adds later ones.
    for (let top = this.#timers[0]; top !== undefined && top.at <= now; top = this.#timers[0]) {
      heapPop(this.#timers);
      const session = top.session;
      if (session.gone || top.at !== session.timerAt) continue;
      session.timerAt = Number.POSITIVE_INFINITY;
      this.#wake(now, session);
    }
  }

  #wake(now: number, session: Session): void {
    if (now >= session.deadline) {
      if (session.state === 'waiting') this.#end(now, session, 'expired', 'Session expired.');
      else this.#end(now, session, 'linger_over');
      return;
    }
    let next = session.deadline;
    if (session.state === 'waiting' || isOpen(session)) {
      const at = this.#checkLiveness(now, session);
      if (session.gone) return;
      next = Math.min(next, at);
    }
    if (session.state === 'started') {
      for (const m of session.members) {
        if (!m.validated || m.ackedVersion > 0 || m.reportedSilent) continue;
        // Counted from when it could first have had a list: the start, or its late join.
        const reportAt = Math.max(session.startedAt, m.joinedAt) + PEERS_ACK_WITHIN_MS;
        if (now < reportAt) {
          next = Math.min(next, reportAt);
          continue;
        }
        m.reportedSilent = true;
        countRejection(this.#counters, 'v2_silent_member');
        this.#peerLeft(session, m, 'silent');
      }
      for (const m of session.members) {
        if (!m.validated || hasAcked(session, m) || m.peersTries >= PEERS_MAX_TRIES) continue;
        if (now >= m.peersNextAt) {
          this.#sendPeers(now, session, m, 0);
          m.peersNextAt = now + PEERS_RETRY_FIRST_MS * 2 ** m.peersTries;
          m.peersTries++;
        }
        if (m.peersTries < PEERS_MAX_TRIES) next = Math.min(next, m.peersNextAt);
      }
    }
    this.#schedule(session, next);
  }

  /**
   * A waiting or open session drops members that never validated and validated ones silent
   * for its `silenceMs`; a silent host ends it (`closed host_left`). Returns when to look again.
   */
  #checkLiveness(now: number, session: Session): number {
    const open = session.state === 'started';
    const stale = session.members.filter(
      (m) => !m.validated && now >= m.joinedAt + VALIDATE_WITHIN_MS,
    );
    if (stale.some((m) => m.isHost)) {
      countRejection(this.#counters, 'v2_unvalidated_member');
      this.#end(now, session, 'host_unvalidated', 'The host did not confirm its address.');
      return Number.POSITIVE_INFINITY;
    }
    for (const m of stale) {
      countRejection(this.#counters, 'v2_unvalidated_member');
      this.#removeMember(session, m);
    }
    const silent = session.members.filter(
      (m) => m.validated && now >= m.lastSeenAt + session.silenceMs,
    );
    const host = silent.find((m) => m.isHost);
    if (host !== undefined) {
      countRejection(this.#counters, 'v2_silent_member');
      this.#end(
        now,
        session,
        open ? 'host_silent_open' : 'host_silent',
        `The host left: nothing from it for ${session.silenceMs / 1000} s.`,
        host,
      );
      return Number.POSITIVE_INFINITY;
    }
    for (const m of silent) {
      countRejection(this.#counters, 'v2_silent_member');
      this.#memberGone(now, session, m, 'silent');
    }
    if (session.lobbyPushDue) this.#pushLobby(session);
    let next = Number.POSITIVE_INFINITY;
    for (const m of session.members) {
      next = Math.min(
        next,
        m.validated ? m.lastSeenAt + session.silenceMs : m.joinedAt + VALIDATE_WITHIN_MS,
      );
    }
    return next;
  }

  /**
   * The server drains before it stops: waiting lobbies are closed with `reason` (as by
   * `shutdown`), `host` and `join` are refused from now on, and started sessions and their
   * relay allocations go on until they end by themselves or `shutdown` comes.
   */
  drain(now: number, reason: string): void {
    this.#draining = true;
    for (const session of [...this.#sessions.values()]) {
      if (session.state === 'waiting') this.#end(now, session, 'drained', reason);
    }
  }

  /**
   * The server stops: every member of every session in the table is told `reason`. Waiting
   * lobbies end `closed` (counted); started ones already ended, and only go.
   */
  shutdown(now: number, reason: string): void {
    for (const session of [...this.#sessions.values()]) {
      this.#end(
        now,
        session,
        session.state === 'waiting' ? 'shutdown' : 'shutdown_started',
        reason,
      );
    }
    this.#timers.length = 0;
    this.#started.clear();
    this.#relay?.clear();
  }
}

function heapPush(heap: TimerEntry[], entry: TimerEntry): void {
  heap.push(entry);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if ((heap[parent] as TimerEntry).at <= entry.at) break;
    heap[i] = heap[parent] as TimerEntry;
    i = parent;
  }
  heap[i] = entry;
}

function heapPop(heap: TimerEntry[]): void {
  const last = heap.pop();
  if (last === undefined || heap.length === 0) return;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= heap.length) break;
    const r = l + 1;
    const c = r < heap.length && (heap[r] as TimerEntry).at < (heap[l] as TimerEntry).at ? r : l;
    if ((heap[c] as TimerEntry).at >= last.at) break;
    heap[i] = heap[c] as TimerEntry;
    i = c;
  }
  heap[i] = last;
}
