/**
 * `HolePunchClient`: the thin node:dgram shell around the pure `Traversal` core, run by the
 * one `UdpDriver`. One UDP socket serves the rendezvous server and the peers, so the mapping
 * the server observed is the mapping the peers punch; after the punch the socket stays open
 * for the game. Telling game data from protocol and routing game datagrams to relayed peers
 * is the core's work; this class only turns its events into the public ones.
 */

import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { type Core, MAIN_SOCKET, type SocketId, type Work } from '../core/index.js';
import { UdpDriver } from '../driver/index.js';
import { HolePunchError } from '../errors.js';
import {
  type Endpoint,
  MAX_CANDIDATES,
  type NatClass,
  unmappedAddress,
} from '../protocol/index.js';
import type { ConfirmedPeer, FailedPeer } from './punch.js';
import { checkTraversalInput, Traversal, type TraversalEvent } from './traversal.js';

export const DEFAULT_SERVER: Endpoint = { address: '127.0.0.1', port: 4000 };
/**
 * `close()` waits at most this long for the server to acknowledge the leave; the core's own
 * retries give up sooner, this only bounds a core that never reports.
 */
const CLOSE_LEAVE_LIMIT_MS = 5_000;
/** ... and at most this long for the game's last datagrams to leave the socket. */
const CLOSE_FLUSH_LIMIT_MS = 1_000;

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export interface HolePunchClientOptions {
  /** The rendezvous server (name or IP). Default 127.0.0.1:4000. */
  readonly server?: { readonly address: string; readonly port: number };
  /** Local UDP port; default 0 (an ephemeral port, so many clients fit on one machine). */
  readonly port?: number;
  /** Local bind address; default every interface. */
  readonly bindAddress?: string;
  /** Offer our LAN addresses to peers (same-NAT players). Default true. */
  readonly shareLocalAddresses?: boolean;
  /** Punch budget in ms (default 8 000). */
  readonly punchBudgetMs?: number;
  /**
   * Reach peers without a direct path through the server's transparent relay (default true;
   * false opts out). Asked for in parallel with the punch, `relayDelayMs` after the peers
   * arrived; such a peer is reported with `path: 'relay'` at the relay's address and port,
   * which take raw datagrams like any peer address (the socket, `send`, or an engine's
   * transport). A direct path found later is reported with `pathChanged`.
   */
  readonly relay?: boolean;
  /** Default 500 ms (`RELAY_DELAY_MS`). */
  readonly relayDelayMs?: number;
  /**
   * Measure our NAT class before registering (two `probe`s to the server, at most 400 ms;
   * docs/protocol-v2.md §6, "Strategy") and let both sides' classes choose how each peer is
   * reached: punching, birthday probing, or the relay at once. Default true.
   */
  readonly natStrategy?: boolean;
  /**
   * Testing aid: return true to drop a datagram (`out` before sending, `in` on arrival).
   * Lets tests inject loss without a proxy.
   */
  readonly dropDatagram?: (direction: 'in' | 'out', peer: Endpoint, data: Uint8Array) => boolean;
}

export interface StartTraversalOptions {
  /** Session (lobby) name: seed `key`. */
  readonly session: string;
  /** Seed `is_player_host`. */
  readonly isHost: boolean;
  /** Unique member name in the session: seed `player_name`. */
  readonly name: string;
  /** Display name; default `name`. */
  readonly nickname?: string;
  /** Host only: lobby size; peers are exchanged when it is full. Default 2. */
  readonly maxPlayers?: number;
  readonly signal?: AbortSignal;
  /** Fail with `timeout` if not punched within this many ms (default: wait in the lobby). */
  readonly timeoutMs?: number;
  /**
   * Fail unless every peer is reached. Default false: resolve once every peer is settled
   * when at least one was reached; the others are in `failedPeers` with their cause.
   */
  readonly requireAllPeers?: boolean;
  /**
   * Host: keep the session open this long after the start (ms, whole seconds): players who
   * join later, or come back under their name after a crash, are punched to everyone still
   * there (`peerJoined`). Members keep a keepalive going meanwhile. Default 0 (closed at the
   * start). End it sooner with `closeSession()`.
   */
  readonly keepOpenMs?: number;
  /**
   * Host: how long a silent player (crashed, unplugged) stays in the lobby, ms (6000-60000;
   * default the server's 15000).
   */
  readonly memberSilenceMs?: number;
  /**
   * Joiner: how long to keep asking for a session that does not exist yet (its host may be
   * starting too), ms. Default 15000; 0 fails with `session_not_found` at the first answer.
   */
  readonly sessionWaitMs?: number;
}

/** A peer confirmed by the punch: send its game traffic from our `socket` to `address:port`. */
export type PunchedPeer = ConfirmedPeer;

export interface HolePunchResult {
  /** Our socket's local port (seed `my_port`). */
  readonly localPort: number;
  /** The host's address, '' when we are the host (seed `hosts_address`). */
  readonly hostAddress: string;
  /** The host's port; our own local port when we are the host (seed `hosts_port`). */
  readonly hostPort: number;
  /** Our public endpoint as the server saw it. */
  readonly publicAddress: string;
  readonly publicPort: number;
  readonly elapsedMs: number;
  /** From the peer list to the result: the punch (or relay) alone. */
  readonly punchMs: number;
  readonly peers: readonly PunchedPeer[];
  /** Peers not reached (empty unless the result is partial), each with its `cause`. */
  readonly failedPeers: readonly FailedPeer[];
  /**
   * How long from now the session takes late joiners and rejoins (`keepOpenMs` of the host),
   * each reported by `peerJoined`; 0 when it takes nobody more.
   */
  readonly openMs: number;
}

export interface SessionRegisteredEvent {
  readonly session: string;
  readonly isHost: boolean;
  readonly localPort: number;
  readonly publicAddress: string;
  readonly publicPort: number;
  /** Our NAT's mapping class as measured before registering (`unknown` when not measured). */
  readonly nat: NatClass;
}

export interface LobbyUpdateEvent {
  readonly nicknames: readonly string[];
  readonly maxPlayers: number;
}

/** A relayed peer got a direct path: its traffic should go to `peer` from now on. */
export interface PathChangedEvent {
  /** The peer as now reached (`path` is a direct one). */
  readonly peer: PunchedPeer;
  /** As it was reached until now (`path: 'relay'`). */
  readonly previous: PunchedPeer;
}

export interface HolePunchClientEvents {
  sessionRegistered: [SessionRegisteredEvent];
  lobbyUpdate: [LobbyUpdateEvent];
  holePunched: [HolePunchResult];
  /** After `holePunched`: a relayed peer is reachable directly (`send` already goes there). */
  pathChanged: [PathChangedEvent];
  failed: [HolePunchError];
  /** A non-protocol datagram on the socket (game traffic from peers). */
  message: [Buffer, dgram.RemoteInfo];
  /** After `holePunched`, in an open session (`keepOpenMs`): a late player is reached. */
  peerJoined: [PunchedPeer];
  /** After `holePunched`: a late player could not be reached, with the cause. */
  peerFailed: [FailedPeer];
  /** After `holePunched`: a player left (`left`) or stopped answering the server (`silent`). */
  peerLeft: [{ readonly name: string; readonly why: 'left' | 'silent' }];
  /** After `holePunched`: the open session ended (the host closed it, or its time ran out). */
  sessionEnded: [{ readonly code: HolePunchError['code']; readonly reason: string }];
}

interface Run {
  readonly core: Traversal;
  readonly options: StartTraversalOptions;
  readonly resolve: (r: HolePunchResult) => void;
  readonly reject: (e: HolePunchError) => void;
  settled: boolean;
  onAbort?: () => void;
  goodbye?: () => void;
  /** The leave or close under way: resolves when the server confirmed or the core gave up. */
  leaving?: Promise<void>;
}

/**
 * What the driver runs: the current traversal's core (a new one per `startTraversal`, on the
 * one socket), behind the `dropDatagram` testing aid.
 */
class CurrentTraversal implements Core<TraversalEvent> {
  traversal: Traversal | undefined;
  readonly #drop: HolePunchClientOptions['dropDatagram'];

  constructor(drop: HolePunchClientOptions['dropDatagram']) {
    this.#drop = drop;
  }

  handle(now: number, from: Endpoint, data: Uint8Array, socket?: SocketId): void {
    const drop = this.#drop;
    // Only the testing aid needs the unmapped sender: no object per datagram without it.
    if (drop?.('in', { address: unmappedAddress(from.address), port: from.port }, data)) return;
    this.traversal?.handle(now, from, data, socket);
  }

  handleTimeout(now: number): void {
    this.traversal?.handleTimeout(now);
  }

  nextDeadline(): number {
    return this.traversal?.nextDeadline() ?? Number.POSITIVE_INFINITY;
  }

  poll(): Work<TraversalEvent> | undefined {
    for (;;) {
      const work = this.traversal?.poll();
      if (work?.type !== 'send' || !this.#drop?.('out', work.to, work.data)) return work;
    }
  }

  bound(now: number, socket: SocketId, ok: boolean): void {
    this.traversal?.bound(now, socket, ok);
  }
}

function lanCandidates(port: number, family: 4 | 6): Endpoint[] {
  const out: Endpoint[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      if (i.internal || (family === 4 ? i.family !== 'IPv4' : i.family !== 'IPv6')) continue;
      if (i.family === 'IPv6' && i.address.startsWith('fe80')) continue;
      out.push({ address: i.address, port });
      if (out.length >= MAX_CANDIDATES) return out;
    }
  }
  return out;
}

export class HolePunchClient extends EventEmitter<HolePunchClientEvents> {
  readonly #options: HolePunchClientOptions;
  readonly #core: CurrentTraversal;
  #socket: dgram.Socket | undefined;
  #driver: UdpDriver<TraversalEvent> | undefined;
  #binding: Promise<dgram.Socket> | undefined;
  #server: Endpoint | undefined;
  #run: Run | undefined;
  #closed = false;
  /** `close()` runs: the leave may still go out, the game's sends may not. */
  #closing = false;
  #detached = false;
  /**
   * Set while `send` hands the game's datagram to the driver: Node refuses a bad port or
   * address synchronously, and the game has always seen that as a throw from `send`.
   */
  #gameSendError: { error?: unknown } | undefined;

  constructor(options: HolePunchClientOptions = {}) {
    super();
    this.#options = options;
    this.#core = new CurrentTraversal(options.dropDatagram);
  }

  /**
   * The UDP socket (after `startTraversal` bound it). Keep using it after `holePunched`.
   * After a `birthday` win on our side (our NAT maps each destination to a random port) it
   * is the birthday socket that reached the peer, not the one we registered from: read it
   * again after `holePunched` (`localPort` and the result's `localPort` follow it).
   */
  get socket(): dgram.Socket | undefined {
    return this.#gameSocket() ?? this.#socket;
  }

  get localPort(): number {
    return this.socket?.address().port ?? 0;
  }

  /** The birthday socket the core made the game's, if any and still open. */
  #gameSocket(): dgram.Socket | undefined {
    const id = this.#run?.core.gameSocket ?? MAIN_SOCKET;
    return id === MAIN_SOCKET ? undefined : this.#driver?.socket(id);
  }

  /**
   * Registers with the server (host or join), waits in the lobby, punches every peer.
   * Resolves on `holePunched`, rejects with the `failed` error. Seed `start_traversal`.
   */
  async startTraversal(options: StartTraversalOptions): Promise<HolePunchResult> {
    if (this.#closed) throw new HolePunchError('aborted', 'the client is closed');
    if (this.#run && !this.#run.settled) {
      throw new HolePunchError('bad_request', 'a traversal is already running');
    }
    const nickname = options.nickname ?? options.name;
    const maxPlayers = options.maxPlayers ?? 2;
    checkTraversalInput({ session: options.session, name: options.name, nickname, maxPlayers });
    if (options.signal?.aborted) throw new HolePunchError('aborted', 'aborted before the start');
    let socket: dgram.Socket;
    let server: Endpoint;
    try {
      socket = await this.#bind();
      server = await this.#resolveServer();
    } catch (error) {
      // DNS and socket failures are failures of the traversal like any other.
      const failure =
        error instanceof HolePunchError
          ? error
          : new HolePunchError('socket_error', String(error), { cause: error });
      this.emit('failed', failure);
      throw failure;
    }
    if (this.#closed) throw new HolePunchError('aborted', 'the client is closed');
    const family = socket.address().family === 'IPv6' ? 6 : 4;
    const candidates =
      this.#options.shareLocalAddresses === false
        ? []
        : lanCandidates(socket.address().port, family);

    const driver = this.#driver;
    if (driver === undefined) throw new HolePunchError('aborted', 'the client is closed');
    return await new Promise<HolePunchResult>((resolve, reject) => {
      const run: Run = {
        options,
        resolve,
        reject,
        settled: false,
        core: new Traversal({
          server,
          session: options.session,
          isHost: options.isHost,
          name: options.name,
          nickname,
          maxPlayers,
          localCandidates: candidates,
          random: Math.random,
          timeoutMs: options.timeoutMs,
          requireAllPeers: options.requireAllPeers,
          keepOpenMs: options.keepOpenMs,
          memberSilenceMs: options.memberSilenceMs,
          sessionWaitMs: options.sessionWaitMs,
          punchBudgetMs: this.#options.punchBudgetMs,
          relay: this.#options.relay ?? true,
          relayDelayMs: this.#options.relayDelayMs,
          classifyNat: this.#options.natStrategy ?? true,
          natStrategy: this.#options.natStrategy ?? true,
        }),
      };
      this.#run = run;
      this.#core.traversal = run.core;
      if (options.signal) {
        const signal = options.signal;
        run.onAbort = () => {
          this.#settleFailed(run, new HolePunchError('aborted', 'aborted by the caller'));
          void this.#leave(options.isHost ? 'close' : 'leave', 'aborted', 'Aborted by the host.');
        };
        signal.addEventListener('abort', run.onAbort, { once: true });
      }
      driver.run((now) => run.core.start(now));
    });
  }

  /** Host: exchange peers now, before the lobby is full. Seed `finalize_peers`. */
  finalizePeers(): void {
    const run = this.#run;
    if (run === undefined || run.settled) {
      throw new HolePunchError('bad_request', 'no traversal is running');
    }
    this.#driver?.run((now) => run.core.finalize(now));
  }

  /** Leave the session (seed `client_disconnect`). Resolves when the server confirmed or gave up. */
  clientDisconnect(): Promise<void> {
    return this.#leave('leave', 'left the session');
  }

  /** Host: close the session for everyone (seed `close_session`). */
  closeSession(reason = 'Session closed by the host.'): Promise<void> {
    return this.#leave('close', 'closed the session', reason);
  }

  /**
   * Sends a raw game datagram to a peer's address (as `holePunched` reported it; for a
   * relayed peer the relay's address and port, which forwards it unchanged) from our socket.
   * Once a relayed peer got a direct path (`pathChanged`), datagrams addressed to its relay
   * endpoint go to the direct one.
   */
  send(data: Uint8Array | string, port: number, address: string): void {
    const driver = this.#driver;
    const core = this.#run?.core;
    if (driver === undefined || core === undefined || this.#detached) {
      throw new HolePunchError('bad_request', 'no socket: run startTraversal first');
    }
    if (this.#closing) throw new HolePunchError('bad_request', 'the client is closed');
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const refused: { error?: unknown } = {};
    this.#gameSendError = refused;
    try {
      driver.run(() => core.sendGame({ address, port }, bytes));
    } finally {
      this.#gameSendError = undefined;
    }
    if ('error' in refused) throw refused.error;
  }

  /**
   * Hands the socket over: the client stops reading it (no more answers to late punches)
   * and will not close it. Prefer keeping the client and using `socket`/`send`/`message`.
   */
  detachSocket(): dgram.Socket {
    const socket = this.socket;
    if (socket === undefined) throw new HolePunchError('bad_request', 'no socket to detach');
    this.#detached = true;
    this.#driver?.stop();
    this.#driver?.detach(this.#run?.core.gameSocket ?? MAIN_SOCKET);
    return socket;
  }

  /**
   * Leaves any running traversal (the server acknowledges it, or the client gives up after a
   * few retries), sends every datagram the game sent before, then releases the socket.
   */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const run = this.#run;
    if (run && (!run.settled || run.leaving)) {
      const left =
        run.leaving ??
        this.#leave(run.options.isHost ? 'close' : 'leave', 'was closed', 'The host left.');
      await Promise.race([left, sleepMs(CLOSE_LEAVE_LIMIT_MS)]);
    }
    run?.goodbye?.();
    const driver = this.#driver;
    if (driver !== undefined) await driver.sendsSettled(CLOSE_FLUSH_LIMIT_MS);
    this.#closed = true;
    // After `detachSocket` the driver owns no socket any more: this closes nothing of the game's.
    await driver?.close();
  }

  #leave(kind: 'leave' | 'close', what: string, reason?: string): Promise<void> {
    const run = this.#run;
    if (run === undefined) return Promise.resolve();
    run.leaving ??= new Promise<void>((resolve) => {
      run.goodbye = resolve;
      const driver = this.#driver;
      if (driver === undefined || driver.stopped) resolve();
      else driver.run((now) => run.core.goodbye(now, kind, reason));
      if (!run.settled)
        this.#settleFailed(run, new HolePunchError('aborted', `the client ${what}`));
    });
    return run.leaving;
  }

  #onEvent(run: Run, ev: TraversalEvent): void {
    switch (ev.type) {
      case 'registered':
        this.emit('sessionRegistered', {
          session: run.options.session,
          isHost: run.options.isHost,
          localPort: this.localPort,
          publicAddress: ev.observed.address,
          publicPort: ev.observed.port,
          nat: run.core.nat,
        });
        return;
      case 'lobby':
        this.emit('lobbyUpdate', { nicknames: ev.nicknames, maxPlayers: ev.maxPlayers });
        return;
      case 'peers':
      case 'latePeers':
        return;
      case 'peerJoined':
        this.emit('peerJoined', ev.peer);
        return;
      case 'peerFailed':
        this.emit('peerFailed', ev.peer);
        return;
      case 'peerLeft':
        this.emit('peerLeft', { name: ev.name, why: ev.why });
        return;
      case 'sessionEnded':
        this.emit('sessionEnded', { code: ev.code, reason: ev.reason });
        return;
      case 'pathChanged':
        this.emit('pathChanged', { peer: ev.peer, previous: ev.previous });
        return;
      case 'data':
        this.emit('message', asBuffer(ev.data), remoteInfo(ev.from, ev.data.length));
        return;
      case 'punched': {
        const result = this.#result(run, ev);
        if (run.settled) return;
        run.settled = true;
        this.#cleanupAbort(run);
        this.emit('holePunched', result);
        run.resolve(result);
        return;
      }
      case 'failed':
        this.#settleFailed(run, ev.error);
        return;
      case 'goodbye':
        run.goodbye?.();
        run.goodbye = undefined;
        return;
    }
  }

  #result(run: Run, ev: Extract<TraversalEvent, { type: 'punched' }>): HolePunchResult {
    const localPort = this.localPort;
    const host = ev.peers.find((p) => p.isHost);
    const observed = run.core.observed;
    return {
      localPort,
      hostAddress: run.options.isHost ? '' : (host?.address ?? ''),
      hostPort: run.options.isHost ? localPort : (host?.port ?? 0),
      publicAddress: observed?.address ?? '',
      publicPort: observed?.port ?? 0,
      elapsedMs: Math.round(ev.elapsedMs),
      punchMs: Math.round(ev.punchMs),
      peers: ev.peers,
      failedPeers: ev.failed,
      openMs: Math.round(ev.openMs),
    };
  }

  #settleFailed(run: Run, error: HolePunchError): void {
    if (run.settled) return;
    run.settled = true;
    this.#cleanupAbort(run);
    this.emit('failed', error);
    run.reject(error);
  }

  #cleanupAbort(run: Run): void {
    if (run.onAbort) run.options.signal?.removeEventListener('abort', run.onAbort);
  }

  async #resolveServer(): Promise<Endpoint> {
    if (this.#server) return this.#server;
    const s = this.#options.server ?? DEFAULT_SERVER;
    const family = this.#socket?.address().family === 'IPv6' ? 6 : 4;
    let address = s.address;
    if (isIP(address) === 0) {
      try {
        address = (await lookup(s.address, { family })).address;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? String(error);
        throw new HolePunchError(
          'server_unreachable',
          `cannot resolve the server name ${s.address} (${code}): check the server address`,
          { cause: error },
        );
      }
    }
    this.#server = { address, port: s.port };
    return this.#server;
  }

  #bind(): Promise<dgram.Socket> {
    this.#binding ??= (async () => {
      const s = this.#options.server ?? DEFAULT_SERVER;
      const v6 = isIP(s.address) === 6 || isIP(this.#options.bindAddress ?? '') === 6;
      const socket = dgram.createSocket(v6 ? { type: 'udp6', ipv6Only: false } : { type: 'udp4' });
      const port = this.#options.port ?? 0;
      await new Promise<void>((resolve, reject) => {
        socket.once('error', (error: NodeJS.ErrnoException) => {
          this.#binding = undefined;
          reject(
            new HolePunchError(
              'socket_error',
              `cannot bind UDP port ${port}${this.#options.bindAddress ? ` on ${this.#options.bindAddress}` : ''} (${error.code ?? error.message}): ${error.code === 'EADDRINUSE' ? 'another program uses it; choose another port or 0' : 'check the port and bind address'}`,
              { cause: error },
            ),
          );
        });
        socket.bind(port, this.#options.bindAddress, () => {
          socket.removeAllListeners('error');
          resolve();
        });
      });
      // ICMP port unreachable from a dead candidate shows up as a socket error: the driver
      // listens (no handler needed), so it does not crash the process.
      this.#driver = new UdpDriver({
        core: this.#core,
        sockets: new Map([[MAIN_SOCKET, socket]]),
        onEvent: (ev) => {
          const run = this.#run;
          if (run !== undefined) this.#onEvent(run, ev);
        },
        onSendError: (error) => {
          const refused = this.#gameSendError;
          if (refused !== undefined && !('error' in refused)) refused.error = error;
        },
      });
      // `close()` waits for every datagram handed to the socket, the game's last ones first.
      this.#driver.trackSends();
      this.#socket = socket;
      return socket;
    })();
    return this.#binding;
  }
}

/** node:dgram hands `message` listeners Buffers; the core's view of them is a Uint8Array. */
function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}

/** The public `message` event's rinfo, for the sender the driver reported. */
function remoteInfo(from: Endpoint, size: number): dgram.RemoteInfo {
  if ('family' in from && 'size' in from) return from as dgram.RemoteInfo;
  const family = isIP(from.address) === 6 ? 'IPv6' : 'IPv4';
  return { address: from.address, family, port: from.port, size };
}
