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
  decodeV2,
  endpointKey,
  hasV2Prefix,
  type NatClass,
  type PushAuth,
  sameEndpoint,
  unmappedAddress,
  type V2Message,
  type V2Peer,
  verifyPushTag,
} from '../protocol/index.js';
import { BirthdaySockets } from './birthday-sockets.js';
import { decideOnError } from './error-policy.js';
import { LatePunches } from './late-punches.js';
import { FAILURE_MESSAGES, peerFailureMessage } from './messages.js';
import { PeerListParts } from './peer-list.js';
import { type ConfirmedPeer, type FailedPeer, PUNCH_BUDGET_MS, PunchAttempt } from './punch.js';
import {
  goodbyeRequest,
  keepaliveRequest,
  peersAck,
  registerRequest,
  relayAllocate,
  startRequest,
} from './server-requests.js';
import { TimerTable, TRAVERSAL_TIMERS, type TraversalTimer } from './timers.js';

// Once defined here, now shared with the doctor (src/nat); still exported from here.
export { natClassOf, SEQUENTIAL_PORT_DELTA } from '../nat/index.js';

import type { TraversalEvent, TraversalState } from './events.js';
import { COLLIDE_PROBES, NatProbe, type NatProbeStep } from './nat-probe.js';
import { RelayAllocations, type RelayState } from './relay.js';
import {
  GOODBYE_MAX_TRIES,
  KEEPALIVE_INTERVAL_MS,
  type Pending,
  REQUEST_RETRY_FIRST_MS,
  type RequestKind,
  Requests,
  SERVER_SILENCE_LIMIT_MS,
  SESSION_WAIT_MS,
  SESSION_WAIT_RETRY_MS,
} from './requests.js';
import {
  type PeerStrategy,
  planStrategies,
  RELAY_DELAY_MS,
  type StrategyPlan,
} from './strategy.js';
import { checkTraversalInput, type TraversalOptions } from './traversal-options.js';

// The traversal's public face: what moved to the modules it is made of is still exported here.
export type { TraversalEvent, TraversalState } from './events.js';
export {
  CLASSIFY_MAX_PROBES,
  CLASSIFY_RETRY_MS,
  CLASSIFY_WITHIN_MS,
  COLLIDE_PROBES,
  COLLIDE_WAIT_MAX_MS,
  COLLIDE_WAIT_RTTS,
} from './nat-probe.js';
export { RELAY_REBIND_MS } from './relay.js';
export {
  GOODBYE_MAX_TRIES,
  KEEPALIVE_INTERVAL_MS,
  REQUEST_RETRY_FIRST_MS,
  REQUEST_RETRY_MAX_MS,
  SERVER_SILENCE_LIMIT_MS,
  SESSION_WAIT_MS,
  SESSION_WAIT_RETRY_MS,
} from './requests.js';
export {
  BIRTHDAY_RELAY_DELAY_MS,
  type PeerStrategy,
  peerStrategy,
  RELAY_DELAY_MS,
  SEQUENTIAL_RELAY_DELAY_MS,
} from './strategy.js';
export { checkTraversalInput, type TraversalOptions } from './traversal-options.js';

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
  readonly #pending = new Requests();
  #token: Uint8Array | undefined;
  /** Our token before the server gave us a fresh one (a rebind), for pushes still under it. */
  #previousToken: Uint8Array | undefined;
  #observed: Endpoint | undefined;
  #startedAt = 0;
  /** The traversal's own timers (timers.ts). */
  readonly #timers = new TimerTable<TraversalTimer>(TRAVERSAL_TIMERS);
  #lastHeardAt = 0;
  /** Whether the server ever answered: silence from the start means it is unreachable. */
  #heardFromServer = false;
  #lobbyVersion = 0;
  #startWanted = false;
  /** The peer list's parts and versions. */
  readonly #peerList = new PeerListParts();
  #punch: PunchAttempt | undefined;
  #sessionWaitUntil = 0;
  /** The session's other members, as the server sent them. */
  #peers: V2Peer[] = [];
  /** The members present now, by name (an open session's list changes). */
  #peersByName = new Map<string, V2Peer>();
  /** Our relay allocations, by peer name, and the refusals. */
  readonly #relays: RelayAllocations;
  /** Last lobby seen, for the timeout message. */
  #lobbySize = '';
  /** The last lobby was full: a server with AUTOSTART `n` then waits for the host. */
  #lobbyFull = false;
  #nat: NatClass = 'unknown';
  #classify: NatProbe | undefined;
  /** The hard side's birthday sockets, and which socket is the game's. */
  readonly #birthday = new BirthdaySockets();
  /** The strategy chosen for each peer (by name), for reports and tests. */
  readonly strategies = new Map<string, PeerStrategy>();
  /** How often to keepalive: the server says (revision ≥ 1), else `KEEPALIVE_INTERVAL_MS`. */
  #keepaliveMs = KEEPALIVE_INTERVAL_MS;
  /** The session takes late joiners until then (from `peers`' `open`): keep it alive. */
  #openUntil = Number.NEGATIVE_INFINITY;
  /** Punches towards late peers, newest last. */
  readonly #late = new LatePunches();
  /** The server answered our `join` with `session_not_found`: a timeout says so. */
  #sessionMissing = false;

  constructor(options: TraversalOptions) {
    checkTraversalInput(options);
    this.#o = options;
    this.#relays = new RelayAllocations(options.server);
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
    return this.#birthday.gameSocket;
  }

  poll(): Work<TraversalEvent> | undefined {
    return this.#work.poll();
  }

  /** A birthday socket that could not be bound is left out (the others still try). */
  bound(_now: number, socket: SocketId, ok: boolean): void {
    if (ok || socket === MAIN_SOCKET) return;
    this.#birthday.bindFailed(socket);
  }

  /**
   * One game datagram to a peer at `to`, as `punched` (or the game) addressed it: a relayed
   * peer that got a direct path since is sent to directly. Allowed in any state, like a raw
   * socket: the game may keep playing after the traversal ended.
   */
  sendGame(to: Endpoint, data: Uint8Array): void {
    const target = unmapped(to);
    this.#send(this.#direct.get(endpointKey(target)) ?? target, data, this.#birthday.gameSocket);
  }

  start(now: number): void {
    if (this.#state !== 'idle') return;
    this.#state = 'registering';
    this.#startedAt = now;
    this.#lastHeardAt = now;
    this.#sessionWaitUntil = now + (this.#o.sessionWaitMs ?? SESSION_WAIT_MS);
    const t = this.#o.timeoutMs;
    if (t !== undefined && Number.isFinite(t)) this.#timers.set('timeout', now + t);
    if (this.#o.classifyNat) {
      this.#classify = new NatProbe(this.#o.server, now, this.#id());
      this.#classifyTick(now);
      return;
    }
    this.#register(now);
  }

  /** Classification: (re)sends the current probe, or gives up and registers. */
  #classifyTick(now: number): void {
    const step = this.#classify?.tick(now);
    if (step !== undefined) this.#classifyStep(now, step);
  }

  /** A `probe_reply` from the server's main or alternate port, for our current probe. */
  #onProbeReply(now: number, from: Endpoint, msg: Extract<V2Message, { type: 'probe_reply' }>) {
    const step = this.#classify?.reply(from, msg);
    if (step !== undefined) this.#classifyStep(now, step);
  }

  #classifyStep(now: number, step: NatProbeStep): void {
    const probe = this.#classify;
    if (probe === undefined) return;
    if (step.type === 'send') {
      this.#send(step.to, step.data);
      return;
    }
    if (step.type === 'collide') {
      const provokeId = this.#id();
      const provoke = probe.collide(now, provokeId, this.#id());
      for (let copy = 0; copy < COLLIDE_PROBES; copy++) this.#send(this.#o.server, provoke);
      return;
    }
    this.#classify = undefined;
    this.#nat = step.nat;
    if (this.#state === 'registering') this.#register(now);
  }

  #register(now: number): void {
    const id = this.#id();
    this.#request(now, 'register', id, registerRequest(this.#o, id, this.#nat));
  }

  /** Host: ask the server to exchange peers now (seed `finalize_peers`). */
  finalize(now: number): void {
    if (!this.#o.isHost) throw new HolePunchError('not_authorized', 'only the host can finalize');
    if (this.#state === 'registering') {
      this.#startWanted = true;
      return;
    }
    if (this.#state !== 'lobby' || this.#token === undefined) return;
    if (this.#pending.has('start')) return;
    const id = this.#id();
    this.#request(now, 'start', id, startRequest(this.#o.session, this.#token, id));
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
    this.#request(now, kind, id, goodbyeRequest(kind, this.#o.session, token, id, reason));
  }

  nextDeadline(): number {
    let next = this.#timers.next();
    if (this.#classify) next = Math.min(next, this.#classify.nextAt);
    next = Math.min(next, this.#pending.nextDeadline());
    next = Math.min(next, this.#relays.nextDeadline());
    if (this.#punch) next = Math.min(next, this.#punch.nextDeadline());
    next = Math.min(next, this.#late.nextDeadline());
    return Math.min(next, this.#birthday.closeAt);
  }

  handleTimeout(now: number): void {
    if (this.#state === 'idle') return;
    if (this.#timers.expired('timeout', now) && this.#active()) {
      if (!this.#heardFromServer) this.#failUnreachable(now);
      else if (this.#state === 'registering' && this.#sessionMissing) {
        // The server answered all along: say what it said, not that time ran out.
        this.#fail('session_not_found', this.#noSession(now));
      } else if (this.#state === 'lobby')
        this.#failAndLeave(
          now,
          'timeout',
          FAILURE_MESSAGES.lobbyTimeout(
            this.#o.timeoutMs,
            this.#lobbySize,
            this.#lobbyFull,
            this.#o.isHost,
          ),
        );
      else this.#failAndLeave(now, 'timeout', FAILURE_MESSAGES.punchTimeout(this.#o.timeoutMs));
      return;
    }
    this.#classifyTick(now);
    if (this.#timers.expired('relay', now)) this.requestRelay(now);
    for (const r of this.#relays.due(now)) this.#sendBind(r);
    for (const p of this.#pending.snapshot()) {
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
        this.#fail(
          'timeout',
          FAILURE_MESSAGES.serverSilent(this.#o.server, SERVER_SILENCE_LIMIT_MS),
        );
        return;
      }
      this.#send(this.#o.server, p.bytes);
      Requests.resent(p, now);
    }
    if (this.#timers.expired('keepalive', now)) this.#keepalive(now);
    if (this.#punch) {
      this.#punch.handleTimeout(now);
      this.#checkPunch(now);
    }
    for (const l of this.#late.all) {
      if (now >= l.relayAt) {
        l.relayAt = Number.POSITIVE_INFINITY;
        this.#askRelay(now, l.attempt.pending);
      }
      l.attempt.handleTimeout(now);
    }
    this.#checkLate(now);
    if (now >= this.#birthday.closeAt) this.#unbind(this.#birthday.close());
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
      if (this.#birthday.carriesGame(socket)) {
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
      const late = this.#late.for(msg.from);
      if (late !== undefined) {
        if (late.attempt.handle(now, from, msg, socket)) this.#checkLate(now);
        return;
      }
      if (this.#punch?.answering) {
        if (this.#punch.handle(now, from, msg, socket)) this.#checkPunch(now);
        if (this.#birthday.lingering) this.#birthday.keepHits(this.#punch.hitSockets);
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
            this.#relays.signedBinds = true;
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
          this.#timers.set('keepalive', now + this.#keepaliveMs);
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
          this.#timers.set('keepalive', now + this.#keepaliveMs);
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
        this.#fail(msg.code, msg.reason || FAILURE_MESSAGES.sessionClosed);
        return;
      default:
        return;
    }
  }

  #registered(token: Uint8Array, observed: Endpoint): void {
    if (this.#state !== 'registering') return;
    this.#pending.drop(['register']);
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
    this.#timers.stop('keepalive');
    if (this.#token === undefined) return;
    const open = now < this.#openUntil && (this.#state === 'punching' || this.#state === 'punched');
    if (this.#state !== 'lobby' && !open) return;
    // One keepalive at a time: its reply (or its retries) schedules the next.
    if (this.#pending.has('keepalive')) return;
    const id = this.#id();
    const bytes = keepaliveRequest(this.#o.session, this.#token, id, this.#lobbyVersion);
    this.#request(now, 'keepalive', id, bytes);
  }

  #failUnreachable(now: number): void {
    this.#fail(
      'server_unreachable',
      FAILURE_MESSAGES.serverUnreachable(this.#o.server, now - this.#startedAt),
    );
  }

  /** The server refused one of our requests: error-policy.ts decides, this carries it out. */
  #onError(now: number, pending: Pending, code: HolePunchError['code'], message: string): void {
    const decision = decideOnError(pending.kind, code, {
      isHost: this.#o.isHost,
      punched: this.#state === 'punched',
      mayWait: now < this.#sessionWaitUntil,
    });
    if (decision.type === 'waitForHost') {
      this.#sessionMissing = true;
      // The host may not have registered yet: ask again soon. The server answered, so
      // the backoff restarts (it is for silence, not for a session that is not there yet).
      pending.nextAt = now + SESSION_WAIT_RETRY_MS;
      pending.intervalMs = REQUEST_RETRY_FIRST_MS;
      return;
    }
    this.#pending.delete(pending.id);
    switch (decision.type) {
      case 'relayRefused':
        // The punch goes on; at the end of its budget this is the cause, if it is still missed.
        if (pending.peer !== undefined) {
          this.#relays.refuse(pending.peer, FAILURE_MESSAGES.relayRefused(code, message));
        }
        return;
      case 'goodbye':
        if (pending.kind === 'leave' || pending.kind === 'close') {
          this.#work.event({ type: 'goodbye', kind: pending.kind, ok: decision.ok });
        }
        return;
      case 'sessionEnded':
        // The game goes on.
        this.#closeOpen();
        this.#work.event({ type: 'sessionEnded', code: 'session_closed', reason: message });
        return;
      case 'fail': {
        const words = {
          server: () => message,
          noSession: () => this.#noSession(now),
          sessionFull: () => FAILURE_MESSAGES.sessionFull(this.#o.session, message),
          sessionGone: () => FAILURE_MESSAGES.sessionGone(message),
        };
        this.#fail(decision.code, words[decision.say]());
        return;
      }
    }
  }

  #noSession(now: number): string {
    return FAILURE_MESSAGES.noSession(this.#o.session, Math.round((now - this.#startedAt) / 1000));
  }

  #onPeers(now: number, msg: Extract<V2Message, { type: 'peers' }>): void {
    if (this.#token === undefined) return;
    const list = this.#peerList.add(msg);
    if (list === undefined) return;
    const { peers, version, newer } = list;
    // Ack every complete copy, so a server whose earlier ack got lost stops re-sending.
    const ackVersion = msg.version === undefined ? undefined : version;
    this.#send(this.#o.server, peersAck(this.#o.session, this.#token, this.#id(), ackVersion));
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
    this.#timers.set(
      'keepalive',
      now < this.#openUntil ? now + this.#keepaliveMs : Number.POSITIVE_INFINITY,
    );
    this.#pending.drop(['keepalive', 'start']);
    this.#work.event({ type: 'peers', peers });
    this.#peersByName = new Map(peers.map((p) => [p.name, p]));
    this.#peers = peers;
    this.#punch = this.#newAttempt(now, msg.punchKey, peers);
    const budget = this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS;
    const { strategies, relayNow, relayDelayMs: relayDelay } = this.#plan(peers, peers.length);
    for (const [name, strategy] of strategies) {
      if (strategy === 'sequential-easy' || strategy === 'sequential-hard') {
        this.#punch.setPrediction(now, name, strategy === 'sequential-easy' ? 'sweep' : 'none');
      } else if (strategy === 'birthday-easy') {
        this.#punch.startBirthdayEasy(now, name);
      } else if (strategy === 'birthday-hard') {
        // Sockets 1..BIRTHDAY_SOCKETS on any port; node:dgram (and the simulator) send what
        // follows a bind from the new socket once it is bound.
        const sockets = this.#birthday.open();
        for (const socket of sockets) this.#work.push({ type: 'bind', socket, port: 0 });
        this.#punch.startBirthdayHard(now, name, sockets);
      }
    }
    if (this.#o.relay ?? true) {
      // A short punch budget asks sooner: the relay must have time to work within it.
      this.#timers.set('relay', now + Math.min(relayDelay, budget / 2));
      // Both NATs pick a port per destination: no direct path to expect, relay at once.
      if (relayNow.length > 0) {
        this.requestRelay(now, relayNow);
        this.#timers.set('relay', now + Math.min(relayDelay, budget / 2));
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
      this.#relays.forgetRefusal(p.name);
    }
    this.#work.event({ type: 'latePeers', peers: fresh });
    const budget = this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS;
    const attempt = this.#newAttempt(now, punchKey, fresh);
    const late = this.#late.add(attempt);
    // Birthday probing needs the game's one socket for one peer: not after the start.
    const {
      strategies,
      relayNow,
      relayDelayMs: relayDelay,
    } = this.#plan(fresh, peers.length, true);
    for (const [name, strategy] of strategies) {
      if (strategy === 'sequential-easy' || strategy === 'sequential-hard') {
        attempt.setPrediction(now, name, strategy === 'sequential-easy' ? 'sweep' : 'none');
      }
    }
    if (this.#o.relay ?? true) {
      late.relayAt = now + Math.min(relayDelay, budget / 2);
      if (relayNow.length > 0) this.#askRelay(now, relayNow);
    }
    this.#checkLate(now);
  }

  /** A punch towards `peers` (punch.ts), its datagrams sent and its upgrades reported by us. */
  #newAttempt(now: number, punchKey: Uint8Array, peers: readonly V2Peer[]): PunchAttempt {
    return new PunchAttempt({
      selfName: this.#o.name,
      punchKey,
      peers,
      now,
      budgetMs: this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS,
      random: this.#o.random,
      send: (to, data, socket) => this.#send(to, data, socket),
      onDirect: (peer, previous) => this.#pathChanged(peer, previous),
    });
  }

  /** The strategies for `peers` (strategy.ts), recorded in `strategies`. */
  #plan(peers: readonly V2Peer[], peerCount: number, late = false): StrategyPlan {
    const plan = planStrategies(this.#nat, peers, {
      natStrategy: this.#o.natStrategy ?? true,
      relayDelayMs: this.#o.relayDelayMs ?? RELAY_DELAY_MS,
      peerCount,
      late,
    });
    for (const [name, strategy] of plan.strategies) this.strategies.set(name, strategy);
    return plan;
  }

  /** Reports late attempts that settled, and forgets those that stopped answering. */
  #checkLate(now: number): void {
    for (const attempt of this.#late.settled()) {
      for (const peer of attempt.confirmed) this.#work.event({ type: 'peerJoined', peer });
      for (const f of attempt.failures) {
        if (this.#relays.phase(f.name) !== 'bound') this.#dropRelay(f.name);
        const peer =
          this.#relays.refusal(f.name) !== undefined
            ? { ...f, cause: 'relay_unavailable' as const }
            : f;
        this.#work.event({ type: 'peerFailed', peer });
      }
    }
    this.#late.prune(now);
  }

  #pathChanged(peer: ConfirmedPeer, previous: ConfirmedPeer): void {
    if (this.#state !== 'punched') return;
    this.#direct.set(endpointKey(unmapped(previous)), { address: peer.address, port: peer.port });
    // Its game goes direct now: the relay allocation is no longer refreshed (it idles out).
    this.#relays.stopRefreshing(peer.name);
    this.#work.event({ type: 'pathChanged', peer, previous });
  }

  /** The open session is over for us: no more keepalives. */
  #closeOpen(): void {
    this.#openUntil = Number.NEGATIVE_INFINITY;
    this.#timers.stop('keepalive');
    this.#pending.drop(['keepalive']);
  }

  #checkPunch(now: number): void {
    const punch = this.#punch;
    if (punch === undefined || this.#state !== 'punching' || punch.state === 'punching') return;
    this.#settle(now);
  }

  /** The server says a peer is gone: a punch or relay to it ends now if it left. */
  #peerLeft(now: number, name: string, why: 'left' | 'silent'): void {
    const late = this.#late.for(name);
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
    this.#timers.stop('relay');
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
      if (!this.#relays.mayAsk(peer)) continue;
      const id = this.#id();
      this.#relays.asking(peer);
      this.#request(now, 'relay', id, relayAllocate(this.#o.session, token, id, peer), peer);
    }
  }

  /** The attempt punching `name` now: a late one, or the first while it punches. */
  #attemptFor(name: string): PunchAttempt | undefined {
    const late = this.#late.for(name);
    if (late !== undefined) return late.attempt;
    return this.#state === 'punching' ? this.#punch : undefined;
  }

  /** The server granted an allocation: bind our game socket's source to it on the relay. */
  #relayGranted(now: number, msg: Extract<V2Message, { type: 'relay_granted' }>): void {
    const attempt = this.#attemptFor(msg.peer);
    if (!this.#relays.isAsking(msg.peer) || attempt?.state !== 'punching') return;
    const r = this.#relays.grant(now, msg);
    attempt.noteRelay(msg.peer, this.#relays.endpointOf(r));
    this.#sendBind(r);
  }

  /** One `relay_bind`, its counter our next request id (relay.ts). */
  #sendBind(r: RelayState): void {
    this.#send(this.#relays.endpointOf(r), this.#relays.bindDatagram(r, this.#id()));
  }

  /** The relay acknowledged our bind: punch the peer through it too. */
  #relayBound(now: number, from: Endpoint, id: Uint8Array): void {
    const r = this.#relays;
    const name = r.bound(now, from, id);
    if (name === undefined) return;
    const port = r.boundPort(name) as number;
    (this.#late.for(name)?.attempt ?? this.#punch)?.addRelay(now, name, {
      address: this.#o.server.address,
      port,
    });
  }

  #dropRelay(name: string): void {
    this.#relays.delete(name);
    this.#pending.drop(['relay'], name);
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
    this.#unbind(this.#birthday.settle(now, punch));
    // Allocations not working by now are of no use: stop asking and binding.
    this.#timers.stop('relay');
    for (const name of this.#relays.peers()) {
      if (this.#relays.phase(name) !== 'bound' && this.#late.for(name) === undefined)
        this.#dropRelay(name);
    }
    const failed: FailedPeer[] = [];
    for (const f of punch.failures) {
      const refused = this.#relays.refusal(f.name) !== undefined;
      failed.push(refused ? { ...f, cause: 'relay_unavailable' } : f);
    }
    if (failed.length === 0 || (peers.length > 0 && !this.#o.requireAllPeers)) {
      this.#state = 'punched';
      this.#timers.stop('timeout');
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
    const why = failed.map((f) => this.#describe(f));
    const message = FAILURE_MESSAGES.punchFailed(
      peers.map((p) => p.name),
      why,
      punch.candidateCount,
      punch.sent,
    );
    const gone = failed.every((f) => f.cause === 'left' || f.cause === 'silent');
    this.#failAndLeave(now, gone ? 'peer_left' : 'punch_failed', message);
  }

  #unbind(sockets: readonly SocketId[]): void {
    for (const socket of sockets) this.#work.push({ type: 'unbind', socket });
  }

  /** One unreached peer and its cause, in words (messages.ts). */
  #describe(f: FailedPeer): string {
    return peerFailureMessage(f, this.#o.punchBudgetMs ?? PUNCH_BUDGET_MS, {
      relayOn: this.#o.relay ?? true,
      boundPort: this.#relays.boundPort(f.name),
      refusal: this.#relays.refusal(f.name),
    });
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
    this.#request(now, 'leave', id, goodbyeRequest('leave', this.#o.session, token, id, ''));
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
    this.#timers.stop('keepalive');
    this.#timers.stop('timeout');
    this.#timers.stop('relay');
    this.#relays.clear();
    this.#classify = undefined;
    this.#unbind(this.#birthday.close());
    if (this.#punch && this.#punch.state === 'punching') this.#punch = undefined;
    else this.#punch?.stopUpgrading();
  }

  #request(now: number, kind: RequestKind, id: number, bytes: Uint8Array, peer?: string): void {
    this.#pending.add(now, kind, id, bytes, peer);
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
