/**
 * The pure punch state machine (docs/protocol-v2.md §6): given the peers the server
 * sent, punch every candidate of every peer until each peer acked one of our punches.
 * No clock, no socket: `now` comes in, datagrams go out through `send`.
 */

import { MAIN_SOCKET, type SocketId } from '../core/index.js';
import { SEQUENTIAL_PORT_DELTA } from '../nat/index.js';
import type { Endpoint } from '../protocol/index.js';
import {
  encodePunch,
  endpointKey,
  isUnicastEndpoint,
  type PeerLeftWhy,
  unmappedAddress,
  type V2Message,
  type V2Peer,
  verifyPunchTag,
} from '../protocol/index.js';

/** One punch round to every candidate of every unconfirmed peer this often, at first. */
export const PUNCH_INTERVAL_MS = 50;
/** After `PUNCH_FAST_ROUNDS` rounds the interval doubles up to this (caps the send rate). */
export const PUNCH_INTERVAL_MAX_MS = 200;
export const PUNCH_FAST_ROUNDS = 20;
/** Rounds on the public, LAN and reflexive candidates before port prediction joins in. */
export const PREDICT_AFTER_ROUNDS = 8;
/** Port prediction tries the ports this far on either side of the observed public port. */
export const PREDICT_PORT_RANGE = 8;
/**
 * Against a peer whose NAT is `edm-sequential` (docs/protocol-v2.md §6, "Strategy"), an `eim`
 * side sweeps this many ports on either side of the peer's public port from the first round:
 * the peer's mapping towards us is the next free port after the one the server saw, pushed
 * further by every other new flow behind that NAT (its classification probes, LAN candidates,
 * relay binds, other hosts), and a small pool may wrap: every port that classification calls
 * sequential (src/nat).
 */
export const SWEEP_PORT_RANGE = SEQUENTIAL_PORT_DELTA;
/**
 * The sweep goes out on every this-many-th punch round only (one sweep a 200 ms at first, one
 * a 800 ms later): each sweep datagram only has to open our own NAT's filter for the peer's
 * punches, which the peer repeats every round. At most 129 datagrams a sweep, ≈ 650/s.
 */
export const SWEEP_EVERY_ROUNDS = 4;
/**
 * How a peer's ports are predicted: `late` (±`PREDICT_PORT_RANGE` after
 * `PREDICT_AFTER_ROUNDS`, the default), `sweep` (±`SWEEP_PORT_RANGE` at once, every
 * `SWEEP_EVERY_ROUNDS`-th round) or `none` (an `eim` peer keeps its port: predicting it only
 * spends our own mappings).
 */
export type PredictMode = 'late' | 'sweep' | 'none';
/**
 * Default total time for punching, from the peer list to the last confirmation. 8 s keeps a
 * relay-only pair (symmetric on one side, port-dependent filter on the other) failing within
 * 10 s of start, while the simulator at 30 % loss with 4 players still confirms every pair
 * (its p99 is about 5 s).
 */
export const PUNCH_BUDGET_MS = 8_000;
/** After success keep answering peers' punches this long, so they can confirm us too. */
export const PUNCH_LINGER_MS = 5_000;
/** Peer-reflexive candidates remembered per peer (a spray of spoofed sources cannot grow it). */
export const MAX_REFLEXIVE_CANDIDATES = 4;

/**
 * Birthday probing (docs/protocol-v2.md §6, "Strategy"), for a pair where one side's NAT
 * maps every destination to a random port (`edm-random`, the hard side) and the other's
 * mapping is endpoint-independent (`eim`, the easy side). The hard side opens this many
 * extra sockets (ids 1..BIRTHDAY_SOCKETS) and punches the easy side's public endpoint from
 * each, so its NAT holds that many mappings towards it.
 */
export const BIRTHDAY_SOCKETS = 256;
/** The hard side punches from every birthday socket this many times... */
export const BIRTHDAY_HARD_ROUNDS = 4;
/** ...this far apart (256 datagrams a round: 1024 in 0.75 s, ≈ 1365/s at most). */
export const BIRTHDAY_HARD_INTERVAL_MS = 250;
/** The easy side probes random ports (1024–65535) of the hard side's public address... */
export const BIRTHDAY_PROBE_BUDGET = 4096;
/** ...at this rate at most (probes per second)... */
export const BIRTHDAY_PROBE_RATE = 1000;
/** ...in batches this often. */
export const BIRTHDAY_TICK_MS = 10;
/** The `candidate` byte of the easy side's birthday probes: never a real index (≤ 254). */
export const BIRTHDAY_CANDIDATE = 255;

/**
 * How a peer is reached: a punched candidate, a birthday hit (`birthday`) or `relay` (a
 * port on the server's relay).
 */
export type PunchPath = 'public' | 'local' | 'predicted' | 'reflexive' | 'birthday' | 'relay';

export interface PunchCandidate {
  readonly endpoint: Endpoint;
  readonly kind: PunchPath;
  /** Our socket that punches it (`MAIN_SOCKET` but for a hard side's birthday socket). */
  readonly socket: SocketId;
  /** A sweep port: punched on every `SWEEP_EVERY_ROUNDS`-th round only. */
  readonly sweep?: boolean;
}

export interface ConfirmedPeer {
  readonly name: string;
  readonly nickname: string;
  readonly isHost: boolean;
  /** Where the peer's ack came from: the address to send game traffic to. */
  readonly address: string;
  readonly port: number;
  readonly path: PunchPath;
  readonly rttMs: number;
}

/**
 * Why a peer was not reached:
 * - `left`: the server said it left the session (it sent `leave`);
 * - `silent`: the server said it never acked the peer list (crashed, quit, lost its network);
 * - `no_answer`: nothing from it got through either way, although the server still lists it
 *   (the NATs on the path need the relay, typically symmetric on both sides, or a firewall);
 * - `one_way`: its punches reached us but ours never reached it (its NAT filters us);
 * - `relay_unavailable`: the relay was asked for and not granted.
 */
export type PeerFailureCause = 'left' | 'silent' | 'no_answer' | 'one_way' | 'relay_unavailable';

/** A peer the traversal did not reach, with the cause. */
export interface FailedPeer {
  readonly name: string;
  readonly nickname: string;
  readonly isHost: boolean;
  readonly cause: PeerFailureCause;
}

interface PeerState {
  readonly info: V2Peer;
  /** Its relay endpoint, once our bind to it was acknowledged. */
  relay: Endpoint | undefined;
  /**
   * The relay endpoint the server granted for it, bound or not yet: the peer's punch may come
   * through it before our own bind is acknowledged, and is then a relayed path all the same.
   */
  granted: Endpoint | undefined;
  readonly candidates: PunchCandidate[];
  readonly known: Set<string>;
  reflexive: number;
  confirmed: ConfirmedPeer | undefined;
  /** A valid punch from it arrived: it is alive and its datagrams reach us. */
  heard: boolean;
  /** The server said it is gone (`left` ends the punching to it at once). */
  gone: PeerLeftWhy | undefined;
  /** Our socket its confirmation came through. */
  socket: SocketId;
  predict: PredictMode;
  /** The round the sweep started in (sweep ports go out then and every few rounds after). */
  sweepFrom: number;
}

/** The easy side's birthday probes towards one peer. */
interface BirthdayEasy {
  readonly peer: PeerState;
  readonly startedAt: number;
  sent: number;
  nextAt: number;
}

/** The hard side's birthday punches towards one peer, from `sockets`. */
interface BirthdayHard {
  readonly peer: PeerState;
  readonly sockets: readonly SocketId[];
  rounds: number;
  nextAt: number;
}

export interface PunchAttemptOptions {
  readonly selfName: string;
  readonly punchKey: Uint8Array;
  readonly peers: readonly V2Peer[];
  readonly now: number;
  readonly budgetMs?: number;
  /** Sends `data` to `to` from our socket `socket` (absent: `MAIN_SOCKET`). */
  readonly send: (to: Endpoint, data: Uint8Array, socket?: SocketId) => void;
  /** Uniform in [0, 1): the easy side's birthday probe ports. Default `Math.random`. */
  readonly random?: () => number;
  /**
   * A peer confirmed through the relay got a direct path later (within the budget): the game
   * should move its traffic there.
   */
  readonly onDirect?: (peer: ConfirmedPeer, relayed: ConfirmedPeer) => void;
}

export type PunchMessage = Extract<V2Message, { type: 'punch' | 'punch_ack' }>;

export class PunchAttempt {
  readonly #self: string;
  readonly #key: Uint8Array;
  readonly #send: (to: Endpoint, data: Uint8Array, socket?: SocketId) => void;
  readonly #random: () => number;
  #birthdayEasy: BirthdayEasy | undefined;
  #birthdayHard: BirthdayHard | undefined;
  /** The hard side's birthday sockets (kept after its punches end: hits still count). */
  readonly #hardSockets = new Set<SocketId>();
  /** Birthday probes the easy side sent (bounded by `BIRTHDAY_PROBE_BUDGET`). */
  birthdayProbes = 0;
  /** Birthday punches the hard side sent from its extra sockets. */
  birthdayPunches = 0;
  /**
   * Birthday sockets a valid punch or ack from a peer arrived on, in order: the peer may have
   * confirmed us at any of their mappings, so they stay open (`Traversal`).
   */
  readonly hitSockets: SocketId[] = [];
  readonly #onDirect: ((peer: ConfirmedPeer, relayed: ConfirmedPeer) => void) | undefined;
  readonly #peers = new Map<string, PeerState>();
  readonly #startedAt: number;
  readonly #failAt: number;
  #round = 0;
  #nextRoundAt: number;
  #seq = 1;
  #state: 'punching' | 'punched' | 'failed' = 'punching';
  #lingerUntil = Number.POSITIVE_INFINITY;
  /** Relayed peers' direct candidates are punched until then (the budget's end). */
  #upgradeUntil = Number.NEGATIVE_INFINITY;
  #lastNow = Number.NEGATIVE_INFINITY;
  /** Datagrams this attempt sent (for reports and tests). */
  sent = 0;
  /** Peer messages dropped: bad tag, not for us, unknown sender. */
  rejected = 0;

  constructor(options: PunchAttemptOptions) {
    this.#self = options.selfName;
    this.#key = options.punchKey;
    this.#send = options.send;
    this.#random = options.random ?? Math.random;
    this.#onDirect = options.onDirect;
    this.#startedAt = options.now;
    this.#failAt = options.now + (options.budgetMs ?? PUNCH_BUDGET_MS);
    this.#nextRoundAt = options.now;
    for (const info of options.peers) {
      const state: PeerState = {
        info,
        candidates: [],
        known: new Set(),
        reflexive: 0,
        relay: undefined,
        granted: undefined,
        confirmed: undefined,
        heard: false,
        gone: undefined,
        socket: MAIN_SOCKET,
        predict: 'late',
        sweepFrom: 0,
      };
      addCandidate(state, info.publicEndpoint, 'public');
      for (const c of info.candidates) addCandidate(state, c, 'local');
      this.#peers.set(info.name, state);
    }
    if (this.#peers.size === 0) this.#finish(options.now);
    else this.handleTimeout(options.now);
  }

  /** Whether `name` is one of the peers this attempt punches. */
  has(name: string): boolean {
    return this.#peers.has(name);
  }

  get state(): 'punching' | 'punched' | 'failed' {
    return this.#state;
  }

  get startedAt(): number {
    return this.#startedAt;
  }

  /** Every confirmed peer, in the order the server listed them. */
  get confirmed(): ConfirmedPeer[] {
    const out: ConfirmedPeer[] = [];
    for (const p of this.#peers.values()) if (p.confirmed) out.push(p.confirmed);
    return out;
  }

  /** Names of the peers not confirmed yet and not reported gone by the server. */
  get pending(): string[] {
    const out: string[] = [];
    for (const p of this.#peers.values()) {
      if (!p.confirmed && p.gone === undefined) out.push(p.info.name);
    }
    return out;
  }

  /** Every peer not confirmed (so far), with what is known about why. */
  get failures(): FailedPeer[] {
    const out: FailedPeer[] = [];
    for (const p of this.#peers.values()) {
      if (p.confirmed) continue;
      const { name, nickname, isHost } = p.info;
      // A peer whose punches arrive is alive, whatever the server thinks of it.
      const cause: PeerFailureCause =
        p.gone === 'left' ? 'left' : p.heard ? 'one_way' : (p.gone ?? 'no_answer');
      out.push({ name, nickname, isHost, cause });
    }
    return out;
  }

  /**
   * The server said `name` is gone. `left` stops the punching to it (it sent `leave`);
   * `silent` only names the cause should it stay unconfirmed (it never acked its peers, but
   * a late ack may have been lost, so it keeps being punched). Returns true when that
   * ended the attempt (every other peer is confirmed or gone).
   */
  markGone(now: number, name: string, why: PeerLeftWhy): boolean {
    const peer = this.#peers.get(name);
    if (peer === undefined || peer.confirmed || this.#state !== 'punching') return false;
    if (peer.gone !== 'left') peer.gone = why;
    if (why !== 'left') return false;
    for (const p of this.#peers.values()) if (!p.confirmed && p.gone !== 'left') return false;
    this.#settle(now);
    return true;
  }

  get candidateCount(): number {
    let n = 0;
    for (const p of this.#peers.values()) n += p.candidates.length;
    return n;
  }

  /**
   * We are the easy side (`eim`) of a birthday pair with `name` (`edm-random`): from now on
   * probe random ports of its public address, `BIRTHDAY_PROBE_RATE` a second at most, up to
   * `BIRTHDAY_PROBE_BUDGET` probes, until it is confirmed. Normal punching goes on.
   */
  startBirthdayEasy(now: number, name: string): boolean {
    const peer = this.#peers.get(name);
    if (peer === undefined || this.#state !== 'punching') return false;
    this.#birthdayEasy = { peer, startedAt: now, sent: 0, nextAt: now };
    this.handleTimeout(now);
    return true;
  }

  /**
   * We are the hard side (`edm-random`) of a birthday pair with `name` (`eim`): punch its
   * public endpoint from each of `sockets` (already asked to be bound),
   * `BIRTHDAY_HARD_ROUNDS` times. A punch or ack that arrives on one of them confirms the peer
   * with path `birthday` through that socket (`socketOf`).
   */
  startBirthdayHard(now: number, name: string, sockets: readonly SocketId[]): boolean {
    const peer = this.#peers.get(name);
    if (peer === undefined || this.#state !== 'punching') return false;
    this.#birthdayHard = { peer, sockets, rounds: 0, nextAt: now };
    for (const socket of sockets) this.#hardSockets.add(socket);
    this.handleTimeout(now);
    return true;
  }

  /**
   * How `name`'s ports are predicted (`PredictMode`). `sweep` adds the sweep ports now and
   * sends them in the next round; `none` and `sweep` skip the late ±`PREDICT_PORT_RANGE`.
   */
  setPrediction(now: number, name: string, mode: PredictMode): boolean {
    const peer = this.#peers.get(name);
    if (peer === undefined || this.#state !== 'punching') return false;
    peer.predict = mode;
    if (mode !== 'sweep') return true;
    // This round (already punched) counts as the first sweep round: the sweep goes out now.
    peer.sweepFrom = this.#round;
    const base = peer.info.publicEndpoint;
    for (let d = 1; d <= SWEEP_PORT_RANGE; d++) {
      for (const port of [base.port + d, base.port - d]) {
        if (port < 1 || port > 65535) continue;
        const index = addCandidate(
          peer,
          { address: base.address, port },
          'predicted',
          MAIN_SOCKET,
          true,
        );
        if (index >= 0 && !peer.confirmed) this.#punch(now, peer, index);
      }
    }
    return true;
  }

  /** The socket a confirmed peer was confirmed through (`MAIN_SOCKET` unless `birthday`). */
  socketOf(name: string): SocketId {
    return this.#peers.get(name)?.socket ?? MAIN_SOCKET;
  }

  /** Birthday probing or punching is still going on. */
  get birthdayActive(): boolean {
    return this.#birthdayEasy !== undefined || this.#birthdayHard !== undefined;
  }

  #birthdayTick(now: number): void {
    const easy = this.#birthdayEasy;
    if (easy !== undefined) {
      if (this.#state !== 'punching' || easy.peer.confirmed || easy.peer.gone === 'left') {
        this.#birthdayEasy = undefined;
      } else if (now >= easy.nextAt) {
        const allowed = Math.min(
          BIRTHDAY_PROBE_BUDGET,
          Math.floor(((now - easy.startedAt) * BIRTHDAY_PROBE_RATE) / 1000) +
            Math.floor((BIRTHDAY_PROBE_RATE * BIRTHDAY_TICK_MS) / 1000),
        );
        const address = easy.peer.info.publicEndpoint.address;
        while (easy.sent < allowed) {
          const port = 1024 + Math.floor(this.#random() * (65536 - 1024));
          easy.sent++;
          this.birthdayProbes++;
          this.#sendTo(
            { address, port },
            {
              type: 'punch',
              requestId: this.#seq++,
              from: this.#self,
              to: easy.peer.info.name,
              candidate: BIRTHDAY_CANDIDATE,
              sentAt: Math.floor(now) >>> 0,
            },
          );
        }
        if (easy.sent >= BIRTHDAY_PROBE_BUDGET) this.#birthdayEasy = undefined;
        else easy.nextAt = now + BIRTHDAY_TICK_MS;
      }
    }
    const hard = this.#birthdayHard;
    if (hard !== undefined) {
      if (this.#state !== 'punching' || hard.peer.confirmed || hard.peer.gone === 'left') {
        this.#birthdayHard = undefined;
      } else if (now >= hard.nextAt) {
        hard.rounds++;
        for (const socket of hard.sockets) {
          this.birthdayPunches++;
          this.#sendTo(
            hard.peer.info.publicEndpoint,
            {
              type: 'punch',
              requestId: this.#seq++,
              from: this.#self,
              to: hard.peer.info.name,
              candidate: 0,
              sentAt: Math.floor(now) >>> 0,
            },
            socket,
          );
        }
        if (hard.rounds >= BIRTHDAY_HARD_ROUNDS) this.#birthdayHard = undefined;
        else hard.nextAt = now + BIRTHDAY_HARD_INTERVAL_MS;
      }
    }
  }

  nextDeadline(): number {
    if (this.#state === 'punching') {
      let next = Math.min(this.#nextRoundAt, this.#failAt);
      if (this.#birthdayEasy) next = Math.min(next, this.#birthdayEasy.nextAt);
      if (this.#birthdayHard) next = Math.min(next, this.#birthdayHard.nextAt);
      return next;
    }
    if (this.#upgrading()) return Math.min(this.#nextRoundAt, this.#failAt);
    return Number.POSITIVE_INFINITY;
  }

  /**
   * Punched, but some peers are reached through the relay only: their direct candidates are
   * still punched until the budget ends, so a direct path that opens late is found.
   */
  #upgrading(): boolean {
    if (this.#state !== 'punched' || this.#upgradeUntil <= this.#lastNow) return false;
    for (const p of this.#peers.values()) if (p.confirmed?.path === 'relay') return true;
    return false;
  }

  /** Stops punching relayed peers' direct candidates (the traversal was left). */
  stopUpgrading(): void {
    this.#upgradeUntil = Number.NEGATIVE_INFINITY;
  }

  /**
   * The relay's port for `name` works on our side (our `relay_bind` was acknowledged): punch
   * through it too. A punch_ack that comes back through it confirms the peer with path
   * `relay` (the peer's address is then the relay's). Returns false for an unknown peer.
   */
  addRelay(now: number, name: string, relay: Endpoint): boolean {
    const peer = this.#peers.get(name);
    if (peer === undefined || this.#state === 'failed') return false;
    peer.relay = relay;
    let index = indexOf(peer, relay);
    if (index >= 0) {
      // A punch through the relay arrived first and made it a reflexive candidate.
      const c = peer.candidates[index] as PunchCandidate;
      peer.candidates[index] = { endpoint: c.endpoint, kind: 'relay', socket: MAIN_SOCKET };
      if (c.kind === 'reflexive') peer.reflexive--;
    } else index = addCandidate(peer, relay, 'relay');
    if (index >= 0 && !peer.confirmed && this.#state === 'punching') this.#punch(now, peer, index);
    return true;
  }

  /** The server granted `relay` for `name` (our bind to it may not be acknowledged yet). */
  noteRelay(name: string, relay: Endpoint): void {
    const peer = this.#peers.get(name);
    if (peer !== undefined) peer.granted = relay;
  }

  /** When a settled attempt stops answering peers (infinite while punching). */
  get lingerUntil(): number {
    return this.#lingerUntil;
  }

  /** True while peer messages still deserve an answer (punching or lingering after success). */
  get answering(): boolean {
    return this.#state === 'punching' || this.#state === 'punched';
  }

  handleTimeout(now: number): void {
    this.#lastNow = now;
    const upgrading = this.#upgrading();
    if (this.#state !== 'punching' && !upgrading) return;
    if (now >= this.#failAt) {
      if (this.#state === 'punching') this.#settle(now);
      return;
    }
    this.#birthdayTick(now);
    if (now < this.#nextRoundAt) return;
    this.#round++;
    if (this.#round === PREDICT_AFTER_ROUNDS + 1) this.#addPredictions();
    for (const peer of this.#peers.values()) {
      if (peer.gone === 'left') continue;
      const relayed = peer.confirmed?.path === 'relay';
      if (peer.confirmed && !relayed) continue;
      const sweepRound =
        this.#round >= peer.sweepFrom && (this.#round - peer.sweepFrom) % SWEEP_EVERY_ROUNDS === 0;
      for (let i = 0; i < peer.candidates.length; i++) {
        const c = peer.candidates[i];
        // A relayed peer: only the direct candidates (the relay path is known to work).
        if (relayed && c?.kind === 'relay') continue;
        if (c?.sweep === true && !sweepRound) continue;
        this.#punch(now, peer, i);
      }
    }
    const slow = Math.max(0, Math.floor((this.#round - PUNCH_FAST_ROUNDS) / 10) + 1);
    const interval =
      this.#round < PUNCH_FAST_ROUNDS
        ? PUNCH_INTERVAL_MS
        : Math.min(PUNCH_INTERVAL_MS * 2 ** slow, PUNCH_INTERVAL_MAX_MS);
    this.#nextRoundAt = now + interval;
  }

  /**
   * Handles a decoded peer message that arrived from `from`. Returns true when it
   * changed the outcome (a peer got confirmed, or all are).
   */
  handle(now: number, from: Endpoint, msg: PunchMessage, socket: SocketId = MAIN_SOCKET): boolean {
    this.#lastNow = now;
    if (this.#state === 'failed' || now > this.#lingerUntil) return false;
    const peer = this.#peers.get(msg.from);
    if (
      peer === undefined ||
      msg.to !== this.#self ||
      !verifyPunchTag(this.#key, msg.signed, msg.tag)
    ) {
      this.rejected++;
      return false;
    }
    if (this.#isBirthdaySocket(socket) && !this.hitSockets.includes(socket)) {
      this.hitSockets.push(socket);
    }
    if (msg.type === 'punch') {
      // Answered from the socket it arrived on: only that socket's mapping lets it through.
      this.#sendTo(
        from,
        {
          type: 'punch_ack',
          requestId: this.#seq++,
          from: this.#self,
          to: peer.info.name,
          candidate: msg.candidate,
          sentAt: msg.sentAt,
        },
        socket,
      );
      peer.heard = true;
      const upgrade = peer.confirmed?.path === 'relay' && this.#upgrading();
      if ((peer.confirmed || this.#state !== 'punching') && !upgrade) return false;
      if (upgrade && peer.relay !== undefined && sameAddress(peer.relay, from)) return false;
      // The peer reached us from here: a mapping towards us exists, punch straight back (from
      // the socket it reached: a birthday socket's hit is a candidate of its own).
      let index = indexOf(peer, from, socket);
      const swept = peer.candidates[index];
      if (swept?.sweep === true) {
        // The sweep found the peer's mapping: punch it every round from now on.
        peer.candidates[index] = {
          endpoint: swept.endpoint,
          kind: swept.kind,
          socket: swept.socket,
        };
      }
      if (index < 0 && socket !== MAIN_SOCKET) {
        if (this.#isBirthdaySocket(socket)) index = addCandidate(peer, from, 'birthday', socket);
      } else if (index < 0 && peer.reflexive < MAX_REFLEXIVE_CANDIDATES) {
        peer.reflexive++;
        index = addCandidate(peer, from, 'reflexive');
      }
      if (index >= 0) this.#punch(now, peer, index);
      return false;
    }
    const relay = peer.relay ?? peer.granted;
    const viaRelay = relay !== undefined && sameAddress(relay, from) && socket === MAIN_SOCKET;
    // An ack on a birthday socket, or one that echoes a birthday probe: the birthday path.
    const birthday = socket !== MAIN_SOCKET || msg.candidate === BIRTHDAY_CANDIDATE;
    const candidate = birthday ? undefined : peer.candidates[msg.candidate];
    const confirmed: ConfirmedPeer = {
      name: peer.info.name,
      nickname: peer.info.nickname,
      isHost: peer.info.isHost,
      address: from.address,
      port: from.port,
      // Where the ack came from decides: through the relay's port it is the relay path.
      path: viaRelay
        ? 'relay'
        : birthday
          ? 'birthday'
          : candidate?.kind === 'relay'
            ? 'reflexive'
            : (candidate?.kind ?? 'reflexive'),
      rttMs: Math.max(0, (Math.floor(now) - msg.sentAt) >>> 0),
    };
    const relayed = peer.confirmed;
    if (relayed !== undefined) {
      // Relayed, and now a direct ack: the direct path wins (and is reported).
      if (relayed.path !== 'relay' || viaRelay || !this.#upgrading()) return false;
      peer.confirmed = confirmed;
      this.#onDirect?.(confirmed, relayed);
      return true;
    }
    if (this.#state !== 'punching') return false;
    if (socket !== MAIN_SOCKET && !this.#isBirthdaySocket(socket)) return false;
    peer.confirmed = confirmed;
    peer.socket = socket;
    for (const p of this.#peers.values()) if (!p.confirmed && p.gone !== 'left') return true;
    this.#finish(now);
    return true;
  }

  /**
   * The budget ran out or every unconfirmed peer left: `punched` (lingering, so the
   * confirmed peers can still confirm us) when at least one peer is confirmed, else `failed`.
   * Whether a partial result is a success is the traversal's call.
   */
  #settle(now: number): void {
    if (this.confirmed.length > 0) this.#finish(now);
    else this.#state = 'failed';
  }

  #finish(now: number): void {
    this.#state = 'punched';
    this.#lastNow = now;
    const relayed = this.confirmed.some((p) => p.path === 'relay');
    // Relayed peers keep being punched directly until the budget ends, and answered after.
    this.#upgradeUntil = relayed ? this.#failAt : Number.NEGATIVE_INFINITY;
    this.#lingerUntil = Math.max(now, relayed ? this.#failAt : now) + PUNCH_LINGER_MS;
  }

  /** One of the hard side's birthday sockets (anything else on another socket is ignored). */
  #isBirthdaySocket(socket: SocketId): boolean {
    return this.#hardSockets.has(socket);
  }

  #punch(now: number, peer: PeerState, index: number): void {
    const c = peer.candidates[index];
    if (c === undefined) return;
    this.#sendTo(
      c.endpoint,
      {
        type: 'punch',
        requestId: this.#seq++,
        from: this.#self,
        to: peer.info.name,
        candidate: index,
        sentAt: Math.floor(now) >>> 0,
      },
      c.socket,
    );
  }

  #sendTo(
    to: Endpoint,
    fields: {
      type: 'punch' | 'punch_ack';
      requestId: number;
      from: string;
      to: string;
      candidate: number;
      sentAt: number;
    },
    socket: SocketId = MAIN_SOCKET,
  ): void {
    this.sent++;
    const data = encodePunch(this.#key, fields);
    if (socket === MAIN_SOCKET) this.#send(to, data);
    else this.#send(to, data, socket);
  }

  #addPredictions(): void {
    for (const peer of this.#peers.values()) {
      if (peer.confirmed || peer.predict !== 'late') continue;
      const base = peer.info.publicEndpoint;
      for (let d = 1; d <= PREDICT_PORT_RANGE; d++) {
        for (const port of [base.port + d, base.port - d]) {
          if (port < 1 || port > 65535) continue;
          addCandidate(peer, { address: base.address, port }, 'predicted');
        }
      }
    }
  }
}

/** Adds a candidate unless known; returns its index (-1 when the list is full). */
function addCandidate(
  peer: PeerState,
  endpoint: Endpoint,
  kind: PunchPath,
  socket: SocketId = MAIN_SOCKET,
  sweep = false,
): number {
  const key = `${socket}/${endpointKey(endpoint)}`;
  if (peer.known.has(key)) return indexOf(peer, endpoint, socket);
  // The candidate index travels as a u8.
  // Only unicast IP literals (src/protocol/address.ts): never a broadcast, multicast or
  // unspecified address, nor a name to look up, whatever the server list said.
  if (!isUnicastEndpoint(endpoint)) return -1;
  if (peer.candidates.length >= 255) return -1;
  peer.known.add(key);
  peer.candidates.push(sweep ? { endpoint, kind, socket, sweep } : { endpoint, kind, socket });
  return peer.candidates.length - 1;
}

function sameAddress(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && unmappedAddress(a.address) === unmappedAddress(b.address);
}

function indexOf(peer: PeerState, endpoint: Endpoint, socket: SocketId = MAIN_SOCKET): number {
  return peer.candidates.findIndex(
    (c) =>
      c.socket === socket &&
      c.endpoint.port === endpoint.port &&
      c.endpoint.address === endpoint.address,
  );
}
