/**
 * The pure client core: one traversal from `host`/`join` through the lobby to confirmed
 * peers (docs/protocol-v2.md §4–6), and afterwards the game's side of the socket (which
 * datagrams are game data, where a game datagram to a relayed peer goes). It never reads a
 * clock or touches a socket: the shell (HolePunchClient, through UdpDriver) or the simulator
 * feeds it `now` and datagrams and carries out what `poll()` hands back (`Core`).
 */
import { type Core, MAIN_SOCKET, type SocketId, type Work, WorkQueue } from '../core/index.js';
import { HolePunchError } from '../errors.js';
import type { Endpoint } from '../protocol/index.js';
import {
  bytesKey,
  decodeV2,
  encodeRelayBind,
  encodeV2,
  endpointKey,
  hasV2Prefix,
  isUnicastEndpoint,
  isValidField,
  MAX_KEEP_OPEN_S,
  MAX_NAME_BYTES,
  MAX_NICKNAME_BYTES,
  MAX_PLAYERS_WIRE,
  MAX_REASON_BYTES,
  MAX_SESSION_BYTES,
  MAX_SILENCE_S,
  MIN_PLAYERS,
  MIN_SILENCE_S,
  type NatClass,
  type PushAuth,
  padRegisterRequest,
  sameEndpoint,
  truncateUtf8,
  unmappedAddress,
  V2_REVISION,
  type V2Message,
  type V2Peer,
  verifyPushTag,
} from '../protocol/index.js';
import {
  BIRTHDAY_SOCKETS,
  type ConfirmedPeer,
  type FailedPeer,
  type PeerFailureCause,
  PUNCH_BUDGET_MS,
  PunchAttempt,
  SWEEP_PORT_RANGE,
} from './punch.js';

/** First retransmission of an unanswered request; doubles up to `REQUEST_RETRY_MAX_MS`. */
export const REQUEST_RETRY_FIRST_MS = 150;
export const REQUEST_RETRY_MAX_MS = 500;
/**
 * A server that answers nothing for this long is considered gone. Long enough that heavy
 * loss (half of all round trips lost) does not look like a dead server: ~40 tries.
 */
export const SERVER_SILENCE_LIMIT_MS = 20_000;
/** A join that meets `session_not_found` keeps trying this long (the host may start later). */
export const SESSION_WAIT_MS = 15_000;
/** Re-join after `session_not_found` this soon (players often start at the same moment). */
export const SESSION_WAIT_RETRY_MS = 100;
/** Keepalive period in a lobby: well under common UDP mapping timeouts (30 s and more). */
export const KEEPALIVE_INTERVAL_MS = 5_000;
/** A bound relay allocation is bound again this often (one keepalive interval). */
export const RELAY_REBIND_MS = KEEPALIVE_INTERVAL_MS;
/**
 * `leave` and `close` are sent at most this many times, 150/300/500 ms apart, so a goodbye
 * is acknowledged or given up within 1.5 s (then the server's keepalive silence limit,
 * 15 s, drops the member anyway).
 */
export const GOODBYE_MAX_TRIES = 4;
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
/**
 * Two public ports at most this far apart are `edm-sequential`: the sweep's range
 * (`SWEEP_PORT_RANGE`). Other flows behind a busy sequential NAT may come between the two
 * probes (the lab's 64-port pool also wraps); two random ports are this close once in ≈ 500.
 */
export const SEQUENTIAL_PORT_DELTA = SWEEP_PORT_RANGE;

/** The NAT class from the public ports towards the server's main and alternate port. */
export function natClassOf(mainPort: number, altPort: number): NatClass {
  if (mainPort === altPort) return 'eim';
  return Math.abs(mainPort - altPort) <= SEQUENTIAL_PORT_DELTA ? 'edm-sequential' : 'edm-random';
}

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

/** A late peer list's punch (an open session): its attempt and when it asks for the relay. */
interface LatePunch {
  readonly attempt: PunchAttempt;
  relayAt: number;
  reported: boolean;
}

/** Our relay allocation towards one peer (docs/protocol-v2.md, "Relay"). */
interface RelayState {
  phase: 'asking' | 'binding' | 'bound';
  port: number;
  id: Uint8Array;
  /** Signs each `relay_bind` (a fresh counter each time: `encodeRelayBind`). */
  bindToken: Uint8Array;
  /** The next bind: a retry while binding, the refresh once bound. */
  nextBindAt: number;
  bindIntervalMs: number;
}

export type TraversalEvent =
  | { type: 'registered'; observed: Endpoint }
  | { type: 'lobby'; nicknames: string[]; maxPlayers: number }
  | { type: 'peers'; peers: V2Peer[] }
  | {
      type: 'punched';
      /** Every reached peer; `path: 'relay'` ones at the relay's address and port. */
      peers: ConfirmedPeer[];
      /** The peers not reached (only with a partial result), with the cause. */
      failed: FailedPeer[];
      elapsedMs: number;
      /** From the peer list to now: how long the punch (or the relay) took. */
      punchMs: number;
      /**
       * How long from now the session stays open for late joiners (`peerJoined`), 0 when it
       * takes nobody more (the host did not keep it open, or its time ran out).
       */
      openMs: number;
    }
  /** A peer reported relayed got a direct path: send its traffic to `peer` from now on. */
  | { type: 'pathChanged'; peer: ConfirmedPeer; previous: ConfirmedPeer }
  /** An open session's new members (late joiners, or members back under their name). */
  | { type: 'latePeers'; peers: V2Peer[] }
  /** A late peer is reached (after `punched`): send its traffic to `peer`. */
  | { type: 'peerJoined'; peer: ConfirmedPeer }
  /** A late peer could not be reached, with the cause. */
  | { type: 'peerFailed'; peer: FailedPeer }
  /** After `punched`: a peer left the session (`leave`) or went silent. */
  | { type: 'peerLeft'; name: string; why: 'left' | 'silent' }
  /** After `punched`: the host closed the open session, or it ended (`code` says which). */
  | { type: 'sessionEnded'; code: HolePunchError['code']; reason: string }
  | { type: 'failed'; error: HolePunchError }
  | { type: 'goodbye'; kind: 'leave' | 'close'; ok: boolean }
  /**
   * A datagram that is not HolePunch protocol: game traffic from a peer. `from` is the
   * sender exactly as the driver reported it (an IPv4-mapped address stays mapped), so the
   * game sees the same source as on a raw socket.
   */
  | { type: 'data'; from: Endpoint; data: Uint8Array };

/** NAT classification under way (`classifyNat`). */
interface Classify {
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

type RequestKind = 'register' | 'start' | 'keepalive' | 'leave' | 'close' | 'relay';

interface Pending {
  readonly kind: RequestKind;
  /** For `relay`: the peer it asks an allocation towards. */
  readonly peer?: string;
  readonly id: number;
  readonly bytes: Uint8Array;
  nextAt: number;
  intervalMs: number;
  tries: number;
  readonly firstAt: number;
}

export type TraversalState =
  | 'idle'
  | 'registering'
  | 'lobby'
  | 'punching'
  | 'punched'
  | 'failed'
  | 'left';

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

export class Traversal implements Core<TraversalEvent> {
  readonly #o: TraversalOptions;
  readonly #work = new WorkQueue<TraversalEvent>();
  /**
   * Relay endpoints (`endpointKey`, unmapped) of peers that got a direct path since
   * (`pathChanged`): `sendGame` to the relay endpoint goes to the direct one, so a game that
   * keeps the address `punched` gave it moves without noticing.
   */
  readonly #direct = new Map<string, Endpoint>();
  #state: TraversalState = 'idle';
  #nextId: number;
  #pending = new Map<number, Pending>();
  #token: Uint8Array | undefined;
  /** Our token before the server gave us a fresh one (a rebind), for pushes still under it. */
  #previousToken: Uint8Array | undefined;
  #observed: Endpoint | undefined;
  #startedAt = 0;
  #deadline = Number.POSITIVE_INFINITY;
  #lastHeardAt = 0;
  /** Whether the server ever answered: silence from the start means it is unreachable. */
  #heardFromServer = false;
  #lobbyVersion = 0;
  #keepaliveAt = Number.POSITIVE_INFINITY;
  #startWanted = false;
  #peerParts = new Map<number, V2Peer>();
  #punch: PunchAttempt | undefined;
  #sessionWaitUntil = 0;
  /** The session's other members, as the server sent them. */
  #peers: V2Peer[] = [];
  /** The members present now, by name (an open session's list changes). */
  #peersByName = new Map<string, V2Peer>();
  /** Our relay allocations, by peer name. */
  #relays = new Map<string, RelayState>();
  /** When the peers not confirmed directly get a relay asked for. */
  #relayAt = Number.POSITIVE_INFINITY;
  /** Peers the relay could not be had for, with the server's word. */
  #relayFailures = new Map<string, string>();
  /** Last lobby seen, for the timeout message. */
  #lobbySize = '';
  /** The last lobby was full: a server with AUTOSTART `n` then waits for the host. */
  #lobbyFull = false;
  #nat: NatClass = 'unknown';
  #classify: Classify | undefined;
  /** Our birthday sockets (hard side) neither kept nor closed yet. */
  #birthdaySockets: SocketId[] = [];
  /**
   * Once the punch settled: when the birthday sockets the peer has not reached by then close
   * (the end of the punch's linger); until then one it reaches is kept.
   */
  #birthdayCloseAt = Number.POSITIVE_INFINITY;
  /** The socket the game's datagrams leave from: a birthday hit's socket, or the main one. */
  #gameSocket: SocketId = MAIN_SOCKET;
  /** Birthday sockets kept open after the punch (hit by the peer): their datagrams are game data. */
  readonly #keptSockets = new Set<SocketId>();
  /** The strategy chosen for each peer (by name), for reports and tests. */
  readonly strategies = new Map<string, PeerStrategy>();
  /** How often to keepalive: the server says (revision ≥ 1), else `KEEPALIVE_INTERVAL_MS`. */
  #keepaliveMs = KEEPALIVE_INTERVAL_MS;
  /**
   * The server is of revision 1 or later (its `registered` says how often to keepalive): it
   * takes signed `relay_bind`s. A revision-0 server gets the bare bindToken it knows.
   */
  #signedBinds = false;
  /** The version of the newest complete peer list, and of the parts being assembled. */
  #peersVersion = 0;
  #partsVersion = 0;
  /** The session takes late joiners until then (from `peers`' `open`): keep it alive. */
  #openUntil = Number.NEGATIVE_INFINITY;
  /** Punches towards late peers, newest last. */
  #late: LatePunch[] = [];
  /** The server answered our `join` with `session_not_found`: a timeout says so. */
  #sessionMissing = false;

  constructor(options: TraversalOptions) {
    checkTraversalInput(options);
    this.#o = options;
    // Random start so that a restarted client's ids do not collide with its old ones.
    this.#nextId = 1 + Math.floor(options.random() * 0x3fffffff);
  }

  /**
   * `lobby`, `closed` and `peer_left` from the server's address whose tag is not ours:
   * forged (or for a token we never had), ignored.
   */
  forgedPushes = 0;

  get state(): TraversalState {
    return this.#state;
  }

  get observed(): Endpoint | undefined {
    return this.#observed;
  }

  get punch(): PunchAttempt | undefined {
    return this.#punch;
  }

  /** Our NAT class as measured while registering (`unknown` without `classifyNat`). */
  get nat(): NatClass {
    return this.#nat;
  }

  /**
   * The socket the game's traffic uses: `MAIN_SOCKET`, or after a `birthday` win on the hard
   * side that birthday socket (the driver keeps it open; `sendGame` sends from it and its
   * datagrams come out as `data`).
   */
  get gameSocket(): SocketId {
    return this.#gameSocket;
  }

  poll(): Work<TraversalEvent> | undefined {
    return this.#work.poll();
  }

  /** A birthday socket that could not be bound is left out (the others still try). */
  bound(_now: number, socket: SocketId, ok: boolean): void {
    if (ok || socket === MAIN_SOCKET) return;
    this.#birthdaySockets = this.#birthdaySockets.filter((s) => s !== socket);
  }

  /**
   * One game datagram to a peer at `to`, as `punched` (or the game) addressed it: a relayed
   * peer that got a direct path since is sent to directly. Allowed in any state, like a raw
   * socket: the game may keep playing after the traversal ended.
   */
  sendGame(to: Endpoint, data: Uint8Array): void {
    const target = unmapped(to);
    this.#send(this.#direct.get(endpointKey(target)) ?? target, data, this.#gameSocket);
  }

  start(now: number): void {
    if (this.#state !== 'idle') return;
    this.#state = 'registering';
    this.#startedAt = now;
    this.#lastHeardAt = now;
    this.#sessionWaitUntil = now + (this.#o.sessionWaitMs ?? SESSION_WAIT_MS);
    const t = this.#o.timeoutMs;
    if (t !== undefined && Number.isFinite(t)) this.#deadline = now + t;
    if (this.#o.classifyNat) {
      const id = this.#id();
      this.#classify = {
        until: now + CLASSIFY_WITHIN_MS,
        nextAt: now,
        sent: 0,
        id,
        to: this.#o.server,
        mainPort: undefined,
        sentAt: now,
      };
      this.#classifyTick(now);
      return;
    }
    this.#register(now);
  }

  /** Classification: (re)sends the current probe, or gives up and registers. */
  #classifyTick(now: number): void {
    const c = this.#classify;
    if (c === undefined || now < c.nextAt) return;
    if (now >= c.until || c.sent >= CLASSIFY_MAX_PROBES) {
      this.#classified(now, 'unknown');
      return;
    }
    c.sent++;
    c.nextAt = now + CLASSIFY_RETRY_MS;
    c.sentAt = now;
    this.#send(
      c.to,
      encodeV2({ type: 'probe', requestId: c.id, changeAddress: false, changePort: false }),
    );
  }

  /** A `probe_reply` from the server's main or alternate port, for our current probe. */
  #onProbeReply(now: number, from: Endpoint, msg: Extract<V2Message, { type: 'probe_reply' }>) {
    const c = this.#classify;
    if (c === undefined || msg.requestId !== c.id || !sameEndpoint(from, c.to)) return;
    if (c.mainPort === undefined) {
      c.mainPort = msg.observed.port;
      if (msg.altPort === 0 || msg.altPort === this.#o.server.port) {
        this.#classified(now, 'unknown');
        return;
      }
      c.to = { address: this.#o.server.address, port: msg.altPort };
      // A NAT that lets unsolicited datagrams in to its own address moves a host to another
      // public port when the host then sends to where they came from (RFC 4787 §4.1, port
      // collision), and so does it to a peer whose punch arrives first: have the server
      // answer from its alternate port unasked, give that answer a round trip to arrive,
      // then probe the alternate port. Such a NAT then measures `edm-random`, as it behaves.
      const provoke = encodeV2({
        type: 'probe',
        requestId: this.#id(),
        changeAddress: false,
        changePort: true,
      });
      for (let copy = 0; copy < COLLIDE_PROBES; copy++) this.#send(this.#o.server, provoke);
      c.sent += COLLIDE_PROBES;
      c.id = this.#id();
      c.nextAt =
        now +
        Math.min(COLLIDE_WAIT_MAX_MS, CLASSIFY_RETRY_MS + COLLIDE_WAIT_RTTS * (now - c.sentAt));
      return;
    }
    this.#classified(now, natClassOf(c.mainPort, msg.observed.port));
  }

  #classified(now: number, nat: NatClass): void {
    this.#classify = undefined;
    this.#nat = nat;
    if (this.#state === 'registering') this.#register(now);
  }

  #register(now: number): void {
    const id = this.#id();
    const base = {
      requestId: id,
      session: this.#o.session,
      name: this.#o.name,
      nickname: this.#o.nickname,
      // The server refuses a host/join with any candidate that is not a unicast IP literal.
      candidates: this.#o.localCandidates.filter(isUnicastEndpoint),
      ...(this.#nat === 'unknown' ? {} : { nat: this.#nat }),
      revision: V2_REVISION,
    };
    // Padded: the server's `registered` may be no larger than 3× the request.
    const bytes = padRegisterRequest(
      this.#o.isHost
        ? encodeV2({
            type: 'host',
            maxPlayers: this.#o.maxPlayers,
            ...base,
            keepOpenS: Math.round((this.#o.keepOpenMs ?? 0) / 1000),
            silenceS: Math.round((this.#o.memberSilenceMs ?? 0) / 1000),
          })
        : encodeV2({ type: 'join', ...base }),
    );
    this.#request(now, 'register', id, bytes);
  }

  /** Host: ask the server to exchange peers now (seed `finalize_peers`). */
  finalize(now: number): void {
    if (!this.#o.isHost) throw new HolePunchError('not_authorized', 'only the host can finalize');
    if (this.#state === 'registering') {
      this.#startWanted = true;
      return;
    }
    if (this.#state !== 'lobby' || this.#token === undefined) return;
    if ([...this.#pending.values()].some((p) => p.kind === 'start')) return;
    const id = this.#id();
    const bytes = encodeV2({
      type: 'start',
      requestId: id,
      session: this.#o.session,
      token: this.#token,
    });
    this.#request(now, 'start', id, bytes);
  }

  /**
   * Leave (`kind` leave, seed `client_disconnect`) or close the session for everyone
   * (`close`, host only, seed `close_session`). Best effort; ends in a `goodbye` event.
   */
  goodbye(now: number, kind: 'leave' | 'close', reason = 'Session closed by the host.'): void {
    const token = this.#token;
    const wasActive = this.#state !== 'left' && this.#state !== 'idle';
    this.#stop('left');
    if (token === undefined || !wasActive) {
      this.#work.event({ type: 'goodbye', kind, ok: true });
      return;
    }
    const id = this.#id();
    const session = this.#o.session;
    const bytes =
      kind === 'close'
        ? encodeV2({
            type: 'close',
            requestId: id,
            session,
            token,
            reason: truncateUtf8(reason, MAX_REASON_BYTES),
          })
        : encodeV2({ type: 'leave', requestId: id, session, token });
    this.#request(now, kind, id, bytes);
  }

  nextDeadline(): number {
    let next = Math.min(this.#deadline, this.#keepaliveAt, this.#relayAt);
    if (this.#classify) next = Math.min(next, this.#classify.nextAt);
    for (const p of this.#pending.values()) next = Math.min(next, p.nextAt);
    for (const r of this.#relays.values())
      if (r.phase !== 'asking') next = Math.min(next, r.nextBindAt);
    if (this.#punch) next = Math.min(next, this.#punch.nextDeadline());
    for (const l of this.#late) next = Math.min(next, l.attempt.nextDeadline(), l.relayAt);
    return Math.min(next, this.#birthdayCloseAt);
  }

  handleTimeout(now: number): void {
    if (this.#state === 'idle') return;
    if (now >= this.#deadline && this.#active()) {
      if (!this.#heardFromServer) this.#failUnreachable(now);
      else if (this.#state === 'registering' && this.#sessionMissing) {
        // The server answered all along: say what it said, not that time ran out.
        this.#fail('session_not_found', this.#noSession(now));
      } else if (this.#state === 'lobby')
        this.#failAndLeave(
          now,
          'timeout',
          `the session did not start within ${this.#o.timeoutMs} ms` +
            (this.#lobbySize ? ` (lobby ${this.#lobbySize})` : '') +
            (this.#lobbyFull
              ? this.#o.isHost
                ? ': the lobby is full and the server waits for you to start it (finalizePeers)'
                : ': the lobby is full and the server waits for the host to start it'
              : ''),
        );
      else
        this.#failAndLeave(
          now,
          'timeout',
          `no connection to all peers within ${this.#o.timeoutMs} ms`,
        );
      return;
    }
    this.#classifyTick(now);
    if (now >= this.#relayAt) this.requestRelay(now);
    for (const r of this.#relays.values()) {
      if (r.phase === 'asking' || now < r.nextBindAt) continue;
      this.#sendBind(r);
      if (r.phase === 'bound') {
        // Refreshed once a keepalive interval: after our NAT re-maps us, the relay follows
        // within one interval.
        r.nextBindAt = now + RELAY_REBIND_MS;
        continue;
      }
      r.nextBindAt = now + r.bindIntervalMs;
      r.bindIntervalMs = Math.min(r.bindIntervalMs * 2, REQUEST_RETRY_MAX_MS);
    }
    for (const p of [...this.#pending.values()]) {
      if (now < p.nextAt) continue;
      if (p.kind === 'leave' || p.kind === 'close') {
        if (p.tries >= GOODBYE_MAX_TRIES) {
          this.#pending.delete(p.id);
          this.#work.event({ type: 'goodbye', kind: p.kind, ok: false });
          continue;
        }
      } else if (now - this.#lastHeardAt >= SERVER_SILENCE_LIMIT_MS) {
        if (!this.#active()) {
          // Keepalives of an open session after success: the game goes on without them.
          this.#closeOpen();
          this.#pending.delete(p.id);
          continue;
        }
        if (!this.#heardFromServer) {
          this.#failUnreachable(now);
          return;
        }
        const s = this.#o.server;
        this.#fail(
          'timeout',
          `no answer from the server ${s.address}:${s.port} for ${SERVER_SILENCE_LIMIT_MS} ms`,
        );
        return;
      }
      this.#send(this.#o.server, p.bytes);
      p.tries++;
      p.nextAt = now + p.intervalMs;
      p.intervalMs = Math.min(p.intervalMs * 2, REQUEST_RETRY_MAX_MS);
    }
    if (now >= this.#keepaliveAt) this.#keepalive(now);
    if (this.#punch) {
      this.#punch.handleTimeout(now);
      this.#checkPunch(now);
    }
    for (const l of this.#late) {
      if (now >= l.relayAt) {
        l.relayAt = Number.POSITIVE_INFINITY;
        this.#askRelay(now, l.attempt.pending);
      }
      l.attempt.handleTimeout(now);
    }
    this.#checkLate(now);
    if (now >= this.#birthdayCloseAt) this.#closeBirthdaySockets();
  }

  /**
   * One datagram that arrived on the socket, protocol or game data alike. Never throws.
   * The game's datagrams come out as `data` events in every state, so one socket serves
   * the protocol and the game from registration to the end of play.
   */
  handle(now: number, sender: Endpoint, data: Uint8Array, socket: SocketId = MAIN_SOCKET): void {
    if (!hasV2Prefix(data)) {
      // Game data on the main socket or the game's birthday socket; a closed or losing
      // birthday socket's leftovers are nobody's.
      if (socket === MAIN_SOCKET || this.#keptSockets.has(socket)) {
        this.#work.event({ type: 'data', from: sender, data });
      }
      return;
    }
    const decoded = decodeV2(data);
    // Protocol-shaped but broken (or a newer version): not the game's either.
    if (!decoded.ok) return;
    const msg = decoded.msg;
    const from = unmapped(sender);
    if (msg.type === 'relay_bound') {
      this.#relayBound(now, from, msg.id);
      return;
    }
    if (msg.type === 'punch' || msg.type === 'punch_ack') {
      const late = this.#lateFor(msg.from);
      if (late !== undefined) {
        if (late.attempt.handle(now, from, msg, socket)) this.#checkLate(now);
        return;
      }
      if (this.#punch?.answering) {
        if (this.#punch.handle(now, from, msg, socket)) this.#checkPunch(now);
        if (this.#birthdayCloseAt < Number.POSITIVE_INFINITY)
          this.#keepHits(this.#punch.hitSockets);
      }
      return;
    }
    if (socket !== MAIN_SOCKET) return;
    if (msg.type === 'probe_reply') {
      this.#onProbeReply(now, from, msg);
      return;
    }
    if (!sameEndpoint(from, this.#o.server)) return;
    if (
      (msg.type === 'lobby' || msg.type === 'closed' || msg.type === 'peer_left') &&
      !this.#authenticPush(msg)
    ) {
      this.forgedPushes++;
      return;
    }
    this.#lastHeardAt = now;
    this.#heardFromServer = true;
    this.#fromServer(now, msg);
  }

  /**
   * A `lobby`, `closed` or `peer_left` counts only when its tag was made with our token
   * (docs/protocol-v2.md, "Pushes are authenticated"): the server's source address alone can
   * be forged. The token we held before a rebind still counts, for pushes the server sent
   * before it moved us.
   */
  #authenticPush(msg: PushAuth): boolean {
    if (this.#token !== undefined && verifyPushTag(this.#token, msg)) return true;
    return this.#previousToken !== undefined && verifyPushTag(this.#previousToken, msg);
  }

  #fromServer(now: number, msg: V2Message): void {
    const pending = msg.requestId !== 0 ? this.#pending.get(msg.requestId) : undefined;
    switch (msg.type) {
      case 'registered':
        if (pending?.kind === 'register') {
          if (msg.keepaliveMs !== undefined && msg.keepaliveMs > 0) {
            this.#keepaliveMs = msg.keepaliveMs;
            this.#signedBinds = true;
          }
          this.#registered(msg.token, msg.observed);
          // Using the token at once shows the server that we receive at this address; only
          // then does it list us in the lobby and push to us. A host's `start` does it too.
          if (this.#startWanted) this.finalize(now);
          else this.#keepalive(now);
        } else if (pending?.kind === 'keepalive' || pending?.kind === 'start') {
          this.#rebound(now, pending, msg.token, msg.observed);
        }
        return;
      case 'ok':
        if (pending === undefined) return;
        this.#pending.delete(pending.id);
        if (pending.kind === 'leave' || pending.kind === 'close') {
          this.#work.event({ type: 'goodbye', kind: pending.kind, ok: true });
        }
        return;
      case 'error':
        if (pending === undefined) return;
        this.#onError(now, pending, msg.code, msg.message);
        return;
      case 'relay_granted':
        if (pending?.kind !== 'relay' || pending.peer !== msg.peer) return;
        this.#pending.delete(pending.id);
        this.#relayGranted(now, msg);
        return;
      case 'peer_left':
        this.#peerLeft(now, msg.name, msg.why);
        return;
      case 'lobby':
        if (pending?.kind === 'keepalive') {
          this.#pending.delete(pending.id);
          this.#keepaliveAt = now + this.#keepaliveMs;
        }
        if (this.#state !== 'lobby' || msg.version <= this.#lobbyVersion) return;
        this.#lobbyVersion = msg.version;
        this.#lobbySize = `${msg.nicknames.length}/${msg.maxPlayers}`;
        this.#lobbyFull = msg.nicknames.length >= msg.maxPlayers;
        this.#work.event({
          type: 'lobby',
          nicknames: [...msg.nicknames],
          maxPlayers: msg.maxPlayers,
        });
        return;
      case 'peers':
        // Ours only: it must carry the token the server sent to our address alone. The server
        // pushes peers only to members validated with that token, so a client still
        // registering (no token yet) has none to expect and ignores them: a forged list
        // cannot make it punch anything.
        if (this.#token === undefined || !sameBytes(msg.token, this.#token)) return;
        if (pending?.kind === 'keepalive') {
          this.#pending.delete(pending.id);
          this.#keepaliveAt = now + this.#keepaliveMs;
        }
        this.#onPeers(now, msg);
        return;
      case 'closed':
        if (this.#state === 'punched') {
          // The game goes on peer to peer; the open session behind it is gone.
          this.#closeOpen();
          this.#work.event({ type: 'sessionEnded', code: msg.code, reason: msg.reason });
          return;
        }
        // Ends an active traversal only (`#fail` ignores it once failed or left).
        this.#fail(msg.code, msg.reason || 'Session closed.');
        return;
      default:
        return;
    }
  }

  #registered(token: Uint8Array, observed: Endpoint): void {
    if (this.#state !== 'registering') return;
    for (const p of [...this.#pending.values()]) {
      if (p.kind === 'register') this.#pending.delete(p.id);
    }
    this.#token = token;
    this.#observed = observed;
    this.#state = 'lobby';
    this.#work.event({ type: 'registered', observed });
  }

  /**
   * The server answered with a fresh token: it saw us at another address than the one we
   * registered from (our NAT re-mapped us), and moves us there once the token comes back.
   */
  #rebound(now: number, pending: Pending, token: Uint8Array, observed: Endpoint): void {
    if (this.#state !== 'lobby') return;
    this.#pending.delete(pending.id);
    this.#previousToken = this.#token;
    this.#token = token;
    this.#observed = observed;
    if (pending.kind === 'start') this.finalize(now);
    else this.#keepalive(now);
  }

  #keepalive(now: number): void {
    this.#keepaliveAt = Number.POSITIVE_INFINITY;
    if (this.#token === undefined) return;
    const open = now < this.#openUntil && (this.#state === 'punching' || this.#state === 'punched');
    if (this.#state !== 'lobby' && !open) return;
    // One keepalive at a time: its reply (or its retries) schedules the next.
    if ([...this.#pending.values()].some((p) => p.kind === 'keepalive')) return;
    const id = this.#id();
    const bytes = encodeV2({
      type: 'keepalive',
      requestId: id,
      session: this.#o.session,
      token: this.#token,
      lobbyVersion: this.#lobbyVersion,
    });
    this.#request(now, 'keepalive', id, bytes);
  }

  #failUnreachable(now: number): void {
    const s = this.#o.server;
    this.#fail(
      'server_unreachable',
      `no answer from the server ${s.address}:${s.port} in ${Math.round(now - this.#startedAt)} ms: ` +
        'check that it runs there and that its UDP port is open',
    );
  }

  #onError(now: number, pending: Pending, code: HolePunchError['code'], message: string): void {
    if (pending.kind === 'relay') {
      // The punch goes on; at the end of its budget this is the cause, if it is still missed.
      this.#pending.delete(pending.id);
      if (pending.peer !== undefined) {
        this.#relays.delete(pending.peer);
        this.#relayFailures.set(pending.peer, `the server cannot relay (${code}: ${message})`);
      }
      return;
    }
    if (pending.kind === 'leave' || pending.kind === 'close') {
      // Already gone (e.g. our first try got through and only its `ok` was lost).
      this.#pending.delete(pending.id);
      const gone = code === 'not_authorized' || code === 'session_not_found';
      this.#work.event({ type: 'goodbye', kind: pending.kind, ok: gone });
      return;
    }
    if (pending.kind === 'register' && code === 'session_not_found' && !this.#o.isHost) {
      if (now < this.#sessionWaitUntil) {
        this.#sessionMissing = true;
        // The host may not have registered yet: ask again soon. The server answered, so
        // the backoff restarts (it is for silence, not for a session that is not there yet).
        pending.nextAt = now + SESSION_WAIT_RETRY_MS;
        pending.intervalMs = REQUEST_RETRY_FIRST_MS;
        return;
      }
    }
    this.#pending.delete(pending.id);
    if (pending.kind === 'keepalive' && this.#state === 'punched') {
      // The open session ended (its keepOpen ran out, or it was closed): the game goes on.
      this.#closeOpen();
      this.#work.event({ type: 'sessionEnded', code: 'session_closed', reason: message });
      return;
    }
    if (pending.kind === 'register' && !this.#o.isHost) {
      const wanted = `"${this.#o.session}"`;
      if (code === 'session_not_found') {
        this.#fail(code, this.#noSession(now));
        return;
      }
      if (code === 'session_full') {
        this.#fail(code, `session ${wanted} cannot take you: ${message}`);
        return;
      }
    }
    if (
      pending.kind === 'keepalive' &&
      (code === 'not_authorized' || code === 'session_not_found')
    ) {
      this.#fail('session_closed', `the session is gone: ${message}`);
      return;
    }
    if (pending.kind === 'start' && code === 'not_authorized') {
      this.#fail('session_closed', `the session is gone: ${message}`);
      return;
    }
    this.#fail(code, message);
  }

  #noSession(now: number): string {
    const waited = Math.round((now - this.#startedAt) / 1000);
    return `no session "${this.#o.session}" on the server after ${waited} s: check the name, and that its host has started hosting`;
  }

  #onPeers(now: number, msg: Extract<V2Message, { type: 'peers' }>): void {
    if (this.#token === undefined) return;
    const version = msg.version ?? 0;
    // An older list than the one we act on (a re-push that crossed a newer one): stale.
    if (version < this.#peersVersion) return;
    if (version !== this.#partsVersion) {
      this.#peerParts.clear();
      this.#partsVersion = version;
    }
    // Ack every complete copy, so a server whose earlier ack got lost stops re-sending.
    for (let i = 0; i < msg.peers.length; i++) {
      this.#peerParts.set(msg.first + i, msg.peers[i] as V2Peer);
    }
    const peers: V2Peer[] = [];
    for (let i = 0; i < msg.total; i++) {
      const p = this.#peerParts.get(i);
      if (p === undefined) return;
      peers.push(p);
    }
    this.#send(
      this.#o.server,
      encodeV2({
        type: 'peers_ack',
        requestId: this.#id(),
        session: this.#o.session,
        token: this.#token,
        ...(msg.version === undefined ? {} : { version }),
      }),
    );
    const newer = version > this.#peersVersion;
    this.#peersVersion = version;
    if (msg.openS !== undefined) {
      this.#openUntil = msg.openS > 0 ? now + msg.openS * 1000 : Number.NEGATIVE_INFINITY;
    }
    if (this.#state === 'punching' || this.#state === 'punched') {
      if (newer) this.#onLatePeers(now, msg.punchKey, peers);
      return;
    }
    if (this.#state !== 'lobby') return;
    this.#state = 'punching';
    // An open session needs us alive to the server after the start (late joiners' lists).
    this.#keepaliveAt = now < this.#openUntil ? now + this.#keepaliveMs : Number.POSITIVE_INFINITY;
    for (const p of [...this.#pending.values()]) {
      if (p.kind === 'keepalive' || p.kind === 'start') this.#pending.delete(p.id);
    }
    this.#work.event({ type: 'peers', peers });
    this.#peersByName = new Map(peers.map((p) => [p.name, p]));
    this.#peers = peers;
    this.#punch = new PunchAttempt({
      selfName: this.#o.name,
      punchKey: msg.punchKey,
      peers,
      now,
      budgetMs: this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS,
      random: this.#o.random,
      send: (to, data, socket) => this.#send(to, data, socket),
      onDirect: (peer, previous) => this.#pathChanged(peer, previous),
    });
    const budget = this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS;
    let relayDelay = this.#o.relayDelayMs ?? RELAY_DELAY_MS;
    const relayNow: string[] = [];
    for (const p of peers) {
      const strategy =
        (this.#o.natStrategy ?? true)
          ? peerStrategy(this.#nat, p.nat ?? 'unknown', peers.length)
          : 'punch';
      this.strategies.set(p.name, strategy);
      if (strategy === 'relay') relayNow.push(p.name);
      else if (strategy === 'sequential-easy' || strategy === 'sequential-hard') {
        relayDelay = Math.max(relayDelay, SEQUENTIAL_RELAY_DELAY_MS);
        this.#punch.setPrediction(now, p.name, strategy === 'sequential-easy' ? 'sweep' : 'none');
      } else if (strategy === 'birthday-easy') {
        relayDelay = Math.max(relayDelay, BIRTHDAY_RELAY_DELAY_MS);
        this.#punch.startBirthdayEasy(now, p.name);
      } else if (strategy === 'birthday-hard') {
        relayDelay = Math.max(relayDelay, BIRTHDAY_RELAY_DELAY_MS);
        // Sockets 1..BIRTHDAY_SOCKETS on any port; node:dgram (and the simulator) send what
        // follows a bind from the new socket once it is bound.
        for (let socket = 1; socket <= BIRTHDAY_SOCKETS; socket++) {
          this.#work.push({ type: 'bind', socket, port: 0 });
          this.#birthdaySockets.push(socket);
        }
        this.#punch.startBirthdayHard(now, p.name, this.#birthdaySockets);
      }
    }
    if (this.#o.relay ?? true) {
      // A short punch budget asks sooner: the relay must have time to work within it.
      this.#relayAt = now + Math.min(relayDelay, budget / 2);
      // Both NATs pick a port per destination: no direct path to expect, relay at once.
      if (relayNow.length > 0) {
        this.requestRelay(now, relayNow);
        this.#relayAt = now + Math.min(relayDelay, budget / 2);
      }
    }
    this.#checkPunch(now);
  }

  /**
   * A newer peer list of an open session: members that are new, or back under their name
   * from another address, are punched by an attempt of their own (the first one may have
   * stopped answering long ago); members missing from it are gone.
   */
  #onLatePeers(now: number, punchKey: Uint8Array, peers: readonly V2Peer[]): void {
    const fresh = peers.filter((p) => {
      const known = this.#peersByName.get(p.name);
      return known === undefined || !sameEndpoint(known.publicEndpoint, p.publicEndpoint);
    });
    const listed = new Set(peers.map((p) => p.name));
    for (const name of [...this.#peersByName.keys()]) {
      if (!listed.has(name)) this.#peerLeft(now, name, 'left');
    }
    this.#peersByName = new Map(peers.map((p) => [p.name, p]));
    if (fresh.length === 0) return;
    for (const p of fresh) {
      // A member back under its name is a new endpoint: its old relay and verdicts are void.
      this.#dropRelay(p.name);
      this.#relayFailures.delete(p.name);
    }
    this.#work.event({ type: 'latePeers', peers: fresh });
    const budget = this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS;
    const attempt = new PunchAttempt({
      selfName: this.#o.name,
      punchKey,
      peers: fresh,
      now,
      budgetMs: budget,
      random: this.#o.random,
      send: (to, data, socket) => this.#send(to, data, socket),
      onDirect: (peer, previous) => this.#pathChanged(peer, previous),
    });
    const late: LatePunch = { attempt, relayAt: Number.POSITIVE_INFINITY, reported: false };
    this.#late.push(late);
    let relayDelay = this.#o.relayDelayMs ?? RELAY_DELAY_MS;
    const relayNow: string[] = [];
    for (const p of fresh) {
      const strategy =
        (this.#o.natStrategy ?? true)
          ? peerStrategy(this.#nat, p.nat ?? 'unknown', peers.length)
          : 'punch';
      this.strategies.set(p.name, strategy);
      // Birthday probing needs the game's one socket for one peer: not after the start.
      if (strategy === 'relay' || strategy.startsWith('birthday')) relayNow.push(p.name);
      else if (strategy === 'sequential-easy' || strategy === 'sequential-hard') {
        relayDelay = Math.max(relayDelay, SEQUENTIAL_RELAY_DELAY_MS);
        attempt.setPrediction(now, p.name, strategy === 'sequential-easy' ? 'sweep' : 'none');
      }
    }
    if (this.#o.relay ?? true) {
      late.relayAt = now + Math.min(relayDelay, budget / 2);
      if (relayNow.length > 0) this.#askRelay(now, relayNow);
    }
    this.#checkLate(now);
  }

  /** The late attempt that punches `name` (the newest one: a rejoin replaces an older entry). */
  #lateFor(name: string): LatePunch | undefined {
    for (let i = this.#late.length - 1; i >= 0; i--) {
      const l = this.#late[i] as LatePunch;
      if (l.attempt.has(name)) return l;
    }
    return undefined;
  }

  /** Reports late attempts that settled, and forgets those that stopped answering. */
  #checkLate(now: number): void {
    for (const l of this.#late) {
      if (l.reported || l.attempt.state === 'punching') continue;
      l.reported = true;
      l.relayAt = Number.POSITIVE_INFINITY;
      for (const peer of l.attempt.confirmed) this.#work.event({ type: 'peerJoined', peer });
      for (const f of l.attempt.failures) {
        if (this.#relays.get(f.name)?.phase !== 'bound') this.#dropRelay(f.name);
        const peer = this.#relayFailures.has(f.name)
          ? { ...f, cause: 'relay_unavailable' as const }
          : f;
        this.#work.event({ type: 'peerFailed', peer });
      }
    }
    this.#late = this.#late.filter((l) => !l.reported || now <= l.attempt.lingerUntil);
  }

  #pathChanged(peer: ConfirmedPeer, previous: ConfirmedPeer): void {
    if (this.#state !== 'punched') return;
    this.#direct.set(endpointKey(unmapped(previous)), { address: peer.address, port: peer.port });
    // Its game goes direct now: the relay allocation is no longer refreshed (it idles out).
    const r = this.#relays.get(peer.name);
    if (r !== undefined) r.nextBindAt = Number.POSITIVE_INFINITY;
    this.#work.event({ type: 'pathChanged', peer, previous });
  }

  /** The open session is over for us: no more keepalives. */
  #closeOpen(): void {
    this.#openUntil = Number.NEGATIVE_INFINITY;
    this.#keepaliveAt = Number.POSITIVE_INFINITY;
    for (const p of [...this.#pending.values()]) {
      if (p.kind === 'keepalive') this.#pending.delete(p.id);
    }
  }

  #checkPunch(now: number): void {
    const punch = this.#punch;
    if (punch === undefined || this.#state !== 'punching' || punch.state === 'punching') return;
    this.#settle(now);
  }

  /** The server says a peer is gone: a punch or relay to it ends now if it left. */
  #peerLeft(now: number, name: string, why: 'left' | 'silent'): void {
    const late = this.#lateFor(name);
    if (late !== undefined && late.attempt.state === 'punching') {
      if (why === 'left') this.#dropRelay(name);
      if (late.attempt.markGone(now, name, why)) this.#checkLate(now);
      return;
    }
    if (this.#state === 'punched') {
      // Told once: the push (left or silent), or a newer list without it, whichever comes first.
      if (!this.#peersByName.delete(name)) return;
      if (why === 'left') this.#dropRelay(name);
      this.#work.event({ type: 'peerLeft', name, why });
      return;
    }
    const punch = this.#punch;
    if (punch === undefined || this.#state !== 'punching') return;
    if (why === 'left') this.#dropRelay(name);
    if (punch.markGone(now, name, why)) this.#checkPunch(now);
  }

  /**
   * Asks the server for a relay allocation towards `names` (default: every peer not
   * confirmed yet and not gone), while the punch goes on. Done by itself `relayDelayMs`
   * after the peers arrived; call it earlier when a direct path is known to be impossible
   * (the hook for the NAT-type exchange). A no-op with `relay: false` or once settled.
   */
  requestRelay(now: number, names?: readonly string[]): void {
    this.#relayAt = Number.POSITIVE_INFINITY;
    const punch = this.#punch;
    if (this.#state !== 'punching' || !punch) return;
    this.#askRelay(now, names ?? punch.pending);
  }

  /** Asks for a relay allocation towards each of `names` still being punched. */
  #askRelay(now: number, names: readonly string[]): void {
    const token = this.#token;
    if (!(this.#o.relay ?? true) || !token) return;
    for (const peer of names) {
      if (this.#attemptFor(peer)?.pending.includes(peer) !== true) continue;
      if (this.#relays.has(peer) || this.#relayFailures.has(peer)) continue;
      const id = this.#id();
      const bytes = encodeV2({
        type: 'relay_allocate',
        requestId: id,
        session: this.#o.session,
        token,
        peer,
      });
      this.#relays.set(peer, {
        phase: 'asking',
        port: 0,
        id: new Uint8Array(0),
        bindToken: new Uint8Array(0),
        nextBindAt: Number.POSITIVE_INFINITY,
        bindIntervalMs: REQUEST_RETRY_FIRST_MS,
      });
      this.#request(now, 'relay', id, bytes, peer);
    }
  }

  /** The server granted an allocation: bind our game socket's source to it on the relay. */
  /** The attempt punching `name` now: a late one, or the first while it punches. */
  #attemptFor(name: string): PunchAttempt | undefined {
    const late = this.#lateFor(name);
    if (late !== undefined) return late.attempt;
    return this.#state === 'punching' ? this.#punch : undefined;
  }

  #relayGranted(now: number, msg: Extract<V2Message, { type: 'relay_granted' }>): void {
    const r = this.#relays.get(msg.peer);
    const attempt = this.#attemptFor(msg.peer);
    if (r === undefined || r.phase !== 'asking' || attempt?.state !== 'punching') return;
    r.phase = 'binding';
    r.port = msg.port;
    r.id = msg.id;
    r.bindToken = msg.bindToken;
    r.nextBindAt = now + REQUEST_RETRY_FIRST_MS;
    r.bindIntervalMs = REQUEST_RETRY_FIRST_MS * 2;
    attempt.noteRelay(msg.peer, { address: this.#o.server.address, port: r.port });
    this.#sendBind(r);
  }

  /**
   * A signed `relay_bind` with a fresh counter (our next request id): the relay moves a bound
   * side only for a counter it has not seen, so a captured bind replays as nothing.
   */
  #sendBind(r: RelayState): void {
    const id = this.#id();
    this.#send(
      { address: this.#o.server.address, port: r.port },
      this.#signedBinds
        ? encodeRelayBind(r.bindToken, id, r.id)
        : encodeV2({ type: 'relay_bind', requestId: id, id: r.id, proof: r.bindToken }),
    );
  }

  /** The relay acknowledged our bind: punch the peer through it too. */
  #relayBound(now: number, from: Endpoint, id: Uint8Array): void {
    if (unmappedAddress(from.address) !== unmappedAddress(this.#o.server.address)) return;
    for (const [name, r] of this.#relays) {
      if (r.phase !== 'binding' || r.port !== from.port || bytesKey(r.id) !== bytesKey(id))
        continue;
      r.phase = 'bound';
      // A revision-0 server moves a side to whichever source binds last: no refresh there.
      r.nextBindAt = this.#signedBinds ? now + RELAY_REBIND_MS : Number.POSITIVE_INFINITY;
      (this.#lateFor(name)?.attempt ?? this.#punch)?.addRelay(now, name, {
        address: this.#o.server.address,
        port: r.port,
      });
      return;
    }
  }

  #dropRelay(name: string): void {
    this.#relays.delete(name);
    for (const p of [...this.#pending.values()]) {
      if (p.kind === 'relay' && p.peer === name) this.#pending.delete(p.id);
    }
  }

  /**
   * Every peer is reached, directly or through the relay, or known to be unreachable:
   * success when all are reached, or (unless `requireAllPeers`) at least one; otherwise a
   * failure that names every unreached peer and its cause.
   */
  #settle(now: number): void {
    const punch = this.#punch;
    if (punch === undefined) return;
    const peers = punch.confirmed;
    this.#settleBirthdaySockets(now, punch);
    // Allocations not working by now are of no use: stop asking and binding.
    this.#relayAt = Number.POSITIVE_INFINITY;
    for (const [name, r] of [...this.#relays]) {
      if (r.phase !== 'bound' && this.#lateFor(name) === undefined) this.#dropRelay(name);
    }
    const failed: FailedPeer[] = [];
    for (const f of punch.failures) {
      failed.push(this.#relayFailures.has(f.name) ? { ...f, cause: 'relay_unavailable' } : f);
    }
    if (failed.length === 0 || (peers.length > 0 && !this.#o.requireAllPeers)) {
      this.#state = 'punched';
      this.#deadline = Number.POSITIVE_INFINITY;
      this.#work.event({
        type: 'punched',
        peers,
        failed,
        elapsedMs: now - this.#startedAt,
        punchMs: now - punch.startedAt,
        openMs: Math.max(0, this.#openUntil - now),
      });
      return;
    }
    const why = failed.map((f) => this.#describe(f)).join('; ');
    const stats = `${punch.candidateCount} candidates, ${punch.sent} datagrams sent`;
    const reached =
      peers.length > 0 ? `reached ${peers.map((p) => p.name).join(', ')} but not all: ` : '';
    const gone = failed.every((f) => f.cause === 'left' || f.cause === 'silent');
    this.#failAndLeave(now, gone ? 'peer_left' : 'punch_failed', `${reached}${why} (${stats})`);
  }

  /**
   * The punch settled: a peer confirmed through a birthday socket makes that socket the
   * game's (`gameSocket`). Both sides confirm on their own, so the peer may confirm us at
   * another of our mappings than the one we confirmed it through, and its punches to them
   * may still be on the way (an `eim` peer punches back only the first few mappings it heard
   * from). Every birthday socket the peer's punches or acks reach before the punch's linger
   * ends stays open (its datagrams are game data; the first hit is the game's socket when we
   * confirmed the peer on the main socket, because an `eim` peer accepts us from wherever it
   * already sent to); the others are closed then. Through the relay only the game's socket
   * counts: the others close at once.
   */
  #settleBirthdaySockets(now: number, punch: PunchAttempt): void {
    if (this.#birthdaySockets.length === 0) return;
    const hits = punch.hitSockets;
    let keep: SocketId = hits[0] ?? MAIN_SOCKET;
    let relayed = false;
    for (const p of punch.confirmed) {
      if (p.path === 'birthday') keep = punch.socketOf(p.name);
      if (p.path === 'relay') relayed = true;
    }
    if (relayed) keep = MAIN_SOCKET;
    this.#gameSocket = keep;
    if (keep !== MAIN_SOCKET) this.#keepHits([keep]);
    if (relayed || !punch.answering) {
      this.#closeBirthdaySockets();
      return;
    }
    this.#keepHits(hits);
    this.#birthdayCloseAt = Math.max(now, punch.lingerUntil);
  }

  /** Moves `sockets` that are still open from the birthday sockets to the kept ones. */
  #keepHits(sockets: readonly SocketId[]): void {
    for (const socket of sockets) {
      const i = this.#birthdaySockets.indexOf(socket);
      if (i < 0) continue;
      this.#birthdaySockets.splice(i, 1);
      this.#keptSockets.add(socket);
    }
  }

  /** Closes every birthday socket not kept. */
  #closeBirthdaySockets(): void {
    for (const socket of this.#birthdaySockets) this.#work.push({ type: 'unbind', socket });
    this.#birthdaySockets = [];
    this.#birthdayCloseAt = Number.POSITIVE_INFINITY;
  }

  /** One unreached peer and its cause, in words. */
  #describe(f: FailedPeer): string {
    const budget = this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS;
    const texts: Record<PeerFailureCause, string> = {
      left: `${f.name} left the session`,
      silent: `${f.name} stopped answering the server after the start (it crashed, quit or lost its network)`,
      no_answer:
        `nothing from ${f.name} got through and none of our punches was answered within the ` +
        `punch budget (${budget} ms), although the server lists it: the NATs between you need ` +
        `the relay (typically a symmetric NAT on both sides), or a firewall drops UDP${this.#relayNote(f.name)}`,
      one_way:
        `${f.name}'s punches reached us but ours never reached it within the punch budget ` +
        `(${budget} ms): its NAT filters us (typically a symmetric NAT on one side), and the ` +
        `relay would connect you${this.#relayNote(f.name)}`,
      relay_unavailable: `no direct path to ${f.name} and ${this.#relayFailures.get(f.name) ?? 'no relay'}`,
    };
    return texts[f.cause];
  }

  /** What became of the relay to a missed peer, for the failure message. */
  #relayNote(name: string): string {
    if (!(this.#o.relay ?? true)) return ' (the relay is off: relay false / --no-relay)';
    const r = this.#relays.get(name);
    if (r?.phase === 'bound')
      return `; our relay port ${r.port} works but ${name} never reached it`;
    return '; no relay allocation was granted in time';
  }

  /**
   * Fails, and tells the server we are gone (`leave`, retried like any goodbye) so that our
   * seat, or the whole lobby and its name when we host, is freed at once.
   */
  #failAndLeave(now: number, code: HolePunchError['code'], message: string): void {
    const token = this.#token;
    const registered = this.#state !== 'registering' && this.#active();
    this.#fail(code, message);
    if (token === undefined || !registered) return;
    const id = this.#id();
    this.#request(
      now,
      'leave',
      id,
      encodeV2({ type: 'leave', requestId: id, session: this.#o.session, token }),
    );
  }

  #active(): boolean {
    return this.#state === 'registering' || this.#state === 'lobby' || this.#state === 'punching';
  }

  #fail(code: HolePunchError['code'], message: string): void {
    if (!this.#active()) return;
    this.#stop('failed');
    this.#work.event({ type: 'failed', error: new HolePunchError(code, message) });
  }

  #stop(state: 'failed' | 'left'): void {
    this.#state = state;
    this.#pending.clear();
    this.#keepaliveAt = Number.POSITIVE_INFINITY;
    this.#deadline = Number.POSITIVE_INFINITY;
    this.#relayAt = Number.POSITIVE_INFINITY;
    this.#relays.clear();
    this.#classify = undefined;
    this.#closeBirthdaySockets();
    if (this.#punch && this.#punch.state === 'punching') this.#punch = undefined;
    else this.#punch?.stopUpgrading();
  }

  #request(now: number, kind: RequestKind, id: number, bytes: Uint8Array, peer?: string): void {
    this.#pending.set(id, {
      kind,
      ...(peer === undefined ? {} : { peer }),
      id,
      bytes,
      nextAt: now + REQUEST_RETRY_FIRST_MS,
      intervalMs: REQUEST_RETRY_FIRST_MS * 2,
      tries: 1,
      firstAt: now,
    });
    this.#send(this.#o.server, bytes);
  }

  /**
   * Every datagram leaves through here. Addresses go out unmapped, as the peer itself would
   * write them: a candidate or a game address in IPv4-mapped form reaches the same host.
   */
  #send(to: Endpoint, data: Uint8Array, socket: SocketId = MAIN_SOCKET): void {
    if (socket === MAIN_SOCKET) this.#work.send(unmapped(to), data);
    else this.#work.send(unmapped(to), data, socket);
  }

  #id(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xfffffffe ? 1 : this.#nextId + 1;
    return id;
  }
}

/** `ep` with its address as the peer would write it; `ep` itself when it already is. */
function unmapped(ep: Endpoint): Endpoint {
  const address = unmappedAddress(ep.address);
  return address === ep.address ? ep : { address, port: ep.port };
}

/** Constant-time equality of two tokens. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
