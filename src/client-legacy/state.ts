import { type Core, MAIN_SOCKET, type SocketId, type Work, WorkQueue } from '../core/index.js';
import type {
  Endpoint,
  LegacyPluginPeers,
  LegacyPluginServerLine,
  LegacyRevision,
} from '../protocol/index.js';
import { decodeLegacyPeerMessage, encodeLegacy, readPluginServerLine } from '../protocol/index.js';

export type { LegacyRevision } from '../protocol/index.js';

/**
 * `_send_client_to_server()` waits this long before `rc`: a joiner from start_traversal, the
 * host from its first `ok:` (so the host's `rc` is 2 s after its `rs` reply too).
 */
export const REGISTER_DELAY_MS = 2_000;
/** @deprecated the same 2 s for the host too: use REGISTER_DELAY_MS. */
export const JOINER_DELAY_MS = REGISTER_DELAY_MS;
/** The original's peer timer period: one round of greet/confirm/go per tick. */
export const PEER_TICK_MS = 100;
/** Greets without a confirm before the original starts spraying ports around the peer's. */
export const GREETS_BEFORE_CASCADE = 5;
/** The cascade covers peerPort-10 .. peerPort+9, like the original's `port_cascade_range`. */
export const CASCADE_HALF_WIDTH = 10;
/** The original reports success after sending this many `go:` without receiving one. */
export const GOS_FOR_SUCCESS = 5;
/**
 * The original had no punch deadline of its own (the game's UI timed out); we give up after
 * this long from `peers:` so a test or benchmark never hangs. Not the v2 client's
 * `PUNCH_BUDGET_MS`: this one models the plugin.
 */
export const PLUGIN_PUNCH_BUDGET_MS = 10_000;

/**
 * The released plugins the client can behave like; `LegacyRevision` (in src/protocol, since
 * the revisions differ on the wire) says how they differ.
 */
export const LEGACY_REVISIONS: readonly LegacyRevision[] = [
  'godot3-lobby',
  'godot3-master',
  'godot4-master',
];
/** The revision whose wire format the seed PROTOCOL.md tables describe (and earlier callers got). */
export const DEFAULT_LEGACY_REVISION: LegacyRevision = 'godot3-lobby';

export interface LegacyClientConfig {
  readonly role: 'host' | 'join';
  readonly session: string;
  readonly name: string;
  /** Only the lobby revision sends it; the master revisions have no nickname. */
  readonly nickname: string;
  /** The plugins hard-code `MAX_PLAYER_COUNT = 2`; games edit that constant. */
  readonly maxPlayers: number;
  readonly server: Endpoint;
  /** Default `DEFAULT_LEGACY_REVISION`. */
  readonly revision?: LegacyRevision;
}

export interface LegacyPunchedPeer {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** The legacy protocol only knows the address the server observed. */
  readonly path: 'public';
  /** From the peer's `confirm:` ISHOST: the plugins never read `peers:`' HOSTING field. */
  readonly isHost: boolean;
}

/**
 * What the original plugin itself did when it gave up (or, for our own punch budget, what we
 * did), so tests can tell the revisions' failures apart. `code` is the kit's `ErrorCode`.
 */
export type LegacyFailureReason =
  /** Lobby revision: `close:REASON` arrived; `handle_failure("Disconnected: REASON")`. */
  | 'server_closed'
  /** `peers:` listed nobody (lobby: `No peers found.`; master: silently waits forever). */
  | 'no_peers'
  /** The plugin cannot parse this `peers:` (Godot 4's `right(6)`, or a short entry). */
  | 'peers_unparsable'
  /** Lobby revision: the game called `client_disconnect()` or `close_session()`. */
  | 'left'
  /** Our addition: no peer handshake within PLUGIN_PUNCH_BUDGET_MS (the original had no deadline). */
  | 'punch_timeout'
  /** A socket could not be bound (`Core.bound` not ok; the plugins print and carry on, or fail). */
  | 'socket_error';

export type LegacyClientEvent =
  /** Every `ok:` (the plugin's `session_registered`, emitted once per `ok:` too). */
  | { readonly event: 'registered'; readonly publicPort: number }
  | { readonly event: 'lobby'; readonly players: readonly string[]; readonly maxPlayers: number }
  | { readonly event: 'peers'; readonly count: number }
  | {
      readonly event: 'punched';
      readonly elapsedMs: number;
      readonly localPort: number;
      readonly peers: readonly LegacyPunchedPeer[];
    }
  | {
      readonly event: 'failed';
      readonly code: 'session_closed' | 'punch_failed' | 'bad_request' | 'aborted';
      readonly reason: LegacyFailureReason;
      /** The plugin's `return_unsuccessful(message)` text where it has one. */
      readonly message: string;
    };

/**
 * What the driver must do, in order, one `poll()` at a time. Everything happens on socket 0,
 * the plugin's one open socket: sends leave from it, and it is re-bound twice over:
 * - the socket switch, `bind` on port 0: the plugins `close()` their server socket and then
 *   `put_packet()`, which on a closed Godot PacketPeerUDP opens a fresh socket on an
 *   ephemeral port (so a new public port behind a NAT); replies come back to that new socket.
 * - listening for peers, `bind` on the port the plugin believes is its public one.
 */
export type LegacyClientWork = Work<LegacyClientEvent>;

interface PeerState {
  name: string;
  address: string;
  port: number;
  isHost: boolean;
}

type Phase = 'waiting' | 'server' | 'punching' | 'done';

/**
 * The original plugin's client, as a sans-IO core: `now` comes in with every call, datagrams,
 * binds and events go out through `poll()`. One socket at a time, like the plugins' flow: the
 * server socket (switched for `rc`, see `LegacyClientWork`) until `peers:`, then the peer
 * socket on the public port the server saw.
 */
export class LegacyClientState implements Core<LegacyClientEvent> {
  private readonly config: LegacyClientConfig;
  readonly revision: LegacyRevision;
  private readonly work = new WorkQueue<LegacyClientEvent>();
  private phase: Phase = 'waiting';
  /** The port of the last `bind` asked for, for the failure message. */
  private bindPort = 0;
  private startedAt = 0;
  /** When the pending `_send_client_to_server()` (a 2 s timer coroutine) sends `rc`. */
  private registerAt = Infinity;
  private nextTickAt = Infinity;
  private punchDeadline = Infinity;
  /** The plugin's `found_server`: set by any `ok:`; the host registers itself on the first. */
  private foundServer = false;
  /** The plugin's `server_udp.is_listening()`; a send while closed opens a new socket. */
  private serverSocketOpen = false;
  /** The public port the server observed (last `ok:`); the original also listens for peers on it. */
  private ownPort = 0;
  private peers: PeerState[] = [];
  private greetsSent = 0;
  private gosSent = 0;
  private receivedGreet = false;
  private receivedConfirm = false;

  constructor(config: LegacyClientConfig) {
    this.config = config;
    this.revision = config.revision ?? DEFAULT_LEGACY_REVISION;
  }

  get finished(): boolean {
    return this.phase === 'done';
  }

  /** Call once the shell has bound the server socket (the plugins bind the server's port). */
  start(now: number): void {
    this.startedAt = now;
    this.phase = 'server';
    this.serverSocketOpen = true;
    if (this.config.role === 'host') {
      // The master revisions close the 4000 socket before `rs`, so `rs` leaves from a fresh
      // ephemeral socket; the lobby revision sends it from the 4000 socket.
      if (this.revision !== 'godot3-lobby') this.closeServerSocket();
      this.toServer(encodeLegacy.registerSession(this.config.session, this.config.maxPlayers));
    } else {
      // start_traversal calls _send_client_to_server(), which first waits 2 s.
      this.registerAt = now + REGISTER_DELAY_MS;
    }
  }

  /**
   * `finalize_peers()`: `ep:KEY` from the server socket as it is now. The plugins let any
   * role call it (the server decides who may); nothing happens once `peers:` arrived.
   */
  finalizePeers(): void {
    if (this.phase === 'server') this.toServer(encodeLegacy.exchangePeers(this.config.session));
  }

  /**
   * `checkout()`: `cc:NAME`. All revisions have it (the master games' only way to leave); it
   * changes nothing else in the plugin. Ignored once `peers:` arrived (the server forgot the
   * name by then).
   */
  checkout(): void {
    if (this.phase === 'server') this.toServer(encodeLegacy.checkOut(this.config.name));
  }

  /** Lobby revision only: `client_disconnect()` = `handle_failure("Client disconnected.")`. */
  clientDisconnect(): void {
    this.requireLobby('client_disconnect');
    if (this.phase !== 'done') this.handleFailure('left', 'Client disconnected.');
  }

  /** Lobby revision only: `close_session()` = `handle_failure("Host preemptively closed session!")`. */
  closeSession(): void {
    this.requireLobby('close_session');
    if (this.phase !== 'done') this.handleFailure('left', 'Host preemptively closed session!');
  }

  nextDeadline(): number {
    if (this.phase === 'done') return Infinity;
    return Math.min(this.registerAt, this.nextTickAt, this.punchDeadline);
  }

  handleTimeout(now: number): void {
    if (this.phase === 'done') return;
    if (now >= this.registerAt) {
      this.registerAt = Infinity;
      this.sendClientRegistration();
    }
    if (now >= this.punchDeadline) {
      this.fail(
        'punch_failed',
        'punch_timeout',
        `no peer answered within ${PLUGIN_PUNCH_BUDGET_MS} ms`,
      );
      return;
    }
    if (now >= this.nextTickAt) {
      this.nextTickAt = now + PEER_TICK_MS;
      this.tick(now);
    }
  }

  /**
   * A datagram on the one socket. Until `peers:` that is the server socket, which reads only
   * server replies; then the peer socket, which reads only the handshake.
   */
  handle(now: number, from: Endpoint, data: Uint8Array, socket: SocketId = MAIN_SOCKET): void {
    if (socket !== MAIN_SOCKET) return;
    if (this.phase === 'server') this.handleServer(now, from, data);
    else if (this.phase === 'punching') this.handlePeer(now, data);
  }

  /**
   * The driver's answer to a `bind`. The plugins had no way to fail here (Godot's `listen()`
   * returned an error they printed); a socket we cannot bind ends the attempt instead of
   * leaving it deaf.
   */
  bound(_now: number, socket: SocketId, ok: boolean): void {
    if (ok || socket !== MAIN_SOCKET || this.phase === 'done') return;
    this.fail('punch_failed', 'socket_error', `cannot listen on port ${this.bindPort}`);
  }

  private handleServer(now: number, from: Endpoint, data: Uint8Array): void {
    // Deviation: the plugins read whatever reaches the socket; we drop other sources.
    if (from.port !== this.config.server.port) return;
    // Which lines each revision reads, and how, is the protocol's business.
    const line: LegacyPluginServerLine = readPluginServerLine(this.revision, data);
    switch (line.type) {
      case 'lobby':
        this.emit({ event: 'lobby', players: line.nicknames, maxPlayers: line.maxPlayers });
        return;
      case 'close':
        // handle_failure("Disconnected: "+m[1]).
        this.handleFailure('server_closed', `Disconnected: ${line.reason}`);
        return;
      case 'ok':
        if (line.port !== undefined) {
          this.ownPort = line.port;
          this.emit({ event: 'registered', publicPort: line.port });
        }
        // The host registers itself as a client after the first `ok:` (its `rs` reply), through
        // the same 2 s coroutine as a joiner; a joiner's `ok:` changes nothing but own_port.
        if (this.config.role === 'host' && !this.foundServer) {
          this.registerAt = now + REGISTER_DELAY_MS;
        }
        this.foundServer = true;
        return;
      case 'peers':
        this.handlePeers(now, line.body, line.entries);
        return;
      case 'other':
        return;
    }
  }

  private handlePeer(now: number, data: Uint8Array): void {
    const msg = decodeLegacyPeerMessage(data);
    if (msg === undefined) return;
    switch (msg.type) {
      case 'greet':
        if (this.receivedGreet) return;
        // The greeter reached us on `peerPort`; the original takes that as its own port and
        // re-listens there (right only when the NAT keeps ports).
        if (msg.peerPort !== this.ownPort) {
          this.ownPort = msg.peerPort;
          this.listen(this.ownPort);
        }
        this.receivedGreet = true;
        return;
      case 'confirm': {
        if (this.receivedConfirm) return;
        const peer = this.peers.find((p) => p.name === msg.name);
        if (peer === undefined) return;
        peer.port = msg.ownPort;
        peer.isHost = peer.isHost || msg.isHost;
        this.receivedConfirm = true;
        return;
      }
      case 'go':
        // The original only looks for `go:` once it has a confirm.
        if (this.receivedConfirm && this.peers.some((p) => p.name === msg.name)) this.succeed(now);
        return;
    }
  }

  poll(): LegacyClientWork | undefined {
    return this.work.poll();
  }

  private tick(now: number): void {
    const name = this.config.name;
    for (const peer of this.peers) {
      if (!this.receivedConfirm) {
        this.send(peer, encodeLegacy.greet(name, this.ownPort, peer.port));
        if (this.greetsSent >= GREETS_BEFORE_CASCADE) {
          for (
            let port = peer.port - CASCADE_HALF_WIDTH;
            port < peer.port + CASCADE_HALF_WIDTH;
            port++
          ) {
            if (port === peer.port || port < 1 || port > 65_535) continue;
            this.work.send(
              { address: peer.address, port },
              encodeLegacy.greet(name, this.ownPort, port),
            );
          }
        }
      }
      if (this.receivedGreet) {
        this.send(
          peer,
          encodeLegacy.confirm(this.ownPort, name, this.config.role === 'host', peer.port),
        );
      }
      if (this.receivedConfirm) this.send(peer, encodeLegacy.go(name));
    }
    if (!this.receivedConfirm) this.greetsSent += 1;
    if (this.receivedConfirm) {
      this.gosSent += 1;
      if (this.gosSent >= GOS_FOR_SUCCESS) this.succeed(now);
    }
  }

  private succeed(now: number): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.emit({
      event: 'punched',
      elapsedMs: now - this.startedAt,
      localPort: this.ownPort,
      peers: this.peers.map((p) => ({
        name: p.name,
        address: p.address,
        port: p.port,
        path: 'public',
        isHost: p.isHost,
      })),
    });
  }

  /**
   * `peers:`: the plugins first close the server socket, then cut the prefix with
   * `right(6)` (Godot 3: from index 6; Godot 4: the last 6 characters, `body`) and parse.
   */
  private handlePeers(now: number, body: string, entries: LegacyPluginPeers): void {
    this.closeServerSocket();
    this.registerAt = Infinity;
    if (entries.ok && entries.peers.length === 0) {
      if (this.revision === 'godot3-lobby') {
        this.handleFailure('no_peers', 'No peers found.');
      } else {
        // No else branch in the master plugins: the socket is closed and nothing else ever
        // happens. Reported so callers do not hang; nothing is sent.
        this.fail(
          'session_closed',
          'no_peers',
          `empty peers: ignored by the ${this.revision} plugin, which then waits forever`,
        );
      }
      return;
    }
    if (!entries.ok) {
      // m[2] missing (or no port) is a script error that aborts _process.
      this.fail(
        'bad_request',
        'peers_unparsable',
        this.revision === 'godot4-master'
          ? `the godot4-master plugin cannot parse peers: (Godot 4 String.right(6) is the last 6 characters, "${body}"; script error at holepunch_node.gd:94)`
          : `the ${this.revision} plugin cannot parse the peers: entry "${entries.entry}" (script error)`,
      );
      return;
    }
    // A dictionary keyed by name: a repeated name overwrites.
    const peers = new Map<string, PeerState>();
    for (const { name, address, port } of entries.peers) {
      peers.set(name, { name, address, port, isHost: false });
    }
    this.peers = [...peers.values()];
    this.phase = 'punching';
    this.emit({ event: 'peers', count: this.peers.length });
    // start_peer_contact(): `goodbye` through the just-closed server socket (so from yet
    // another fresh socket), close it, listen for peers on own_port.
    this.toServer(encodeLegacy.goodbye());
    this.serverSocketOpen = false;
    this.listen(this.ownPort);
    this.punchDeadline = now + PLUGIN_PUNCH_BUDGET_MS;
    this.nextTickAt = now;
    this.tick(now);
    this.nextTickAt = now + PEER_TICK_MS;
  }

  /**
   * The lobby revision's handle_failure(message): `cs:KEY:message` if host, its server
   * socket is open and an `ok:` came; else `cc:NAME` (through a fresh socket if the server
   * socket was closed). Then everything closes and return_unsuccessful(message) fires.
   */
  private handleFailure(reason: LegacyFailureReason, message: string): void {
    if (this.config.role === 'host' && this.serverSocketOpen && this.foundServer) {
      this.toServer(encodeLegacy.closeSession(this.config.session, message));
    } else {
      this.toServer(encodeLegacy.checkOut(this.config.name));
    }
    this.fail(reason === 'left' ? 'aborted' : 'session_closed', reason, message);
  }

  private fail(
    code: Extract<LegacyClientEvent, { event: 'failed' }>['code'],
    reason: LegacyFailureReason,
    message: string,
  ): void {
    this.phase = 'done';
    this.registerAt = Infinity;
    this.emit({ event: 'failed', code, reason, message });
  }

  private requireLobby(method: string): void {
    if (this.revision !== 'godot3-lobby') {
      throw new Error(`the ${this.revision} plugin has no ${method}() (only checkout())`);
    }
  }

  /** _send_client_to_server() after its 2 s: `server_udp.close()`, then `rc` from a new socket. */
  private sendClientRegistration(): void {
    this.closeServerSocket();
    this.toServer(
      this.revision === 'godot3-lobby'
        ? encodeLegacy.registerClient(this.config.name, this.config.session, this.config.nickname)
        : encodeLegacy.registerClientMaster(this.config.name, this.config.session),
    );
  }

  private closeServerSocket(): void {
    this.serverSocketOpen = false;
  }

  /** put_packet to the server; on a closed socket Godot opens a new ephemeral one first. */
  private toServer(data: Uint8Array): void {
    if (!this.serverSocketOpen) {
      this.bind(0);
      this.serverSocketOpen = true;
    }
    this.work.send(this.config.server, data);
  }

  /** Like the original: close the socket, listen on the port it believes is its own. */
  private listen(port: number): void {
    this.bind(port);
  }

  private bind(port: number): void {
    this.bindPort = port;
    this.work.push({ type: 'bind', socket: MAIN_SOCKET, port });
  }

  private send(peer: PeerState, data: Uint8Array): void {
    this.work.send({ address: peer.address, port: peer.port }, data);
  }

  private emit(event: LegacyClientEvent): void {
    this.work.event(event);
  }
}
