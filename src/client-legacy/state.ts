import type { Endpoint } from '../protocol/endpoint.js';
import { decodePeerMessage, decodeServerMessage, encodeLegacy } from './messages.js';

/** The original joiner waits this long before registering, so the host's `rs` lands first. */
export const JOINER_DELAY_MS = 2_000;
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
 * this long from `peers:` so a test or benchmark never hangs.
 */
export const PUNCH_BUDGET_MS = 10_000;

export interface LegacyClientConfig {
  readonly role: 'host' | 'join';
  readonly session: string;
  readonly name: string;
  readonly nickname: string;
  readonly maxPlayers: number;
  readonly server: Endpoint;
}

export interface LegacyPunchedPeer {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** The legacy protocol only knows the address the server observed. */
  readonly path: 'public';
  readonly isHost: boolean;
}

export type LegacyClientEvent =
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
      readonly code: 'session_closed' | 'punch_failed';
      readonly message: string;
    };

/** What the shell must do; drained with `poll()`. */
export type LegacyClientAction =
  | { readonly type: 'send'; readonly to: Endpoint; readonly data: Uint8Array }
  /** Close the server socket (if open) and (re)bind the peer socket on `port`. */
  | { readonly type: 'listen'; readonly port: number }
  | { readonly type: 'event'; readonly event: LegacyClientEvent };

interface PeerState {
  name: string;
  address: string;
  port: number;
  isHost: boolean;
}

type Phase = 'waiting' | 'registering' | 'lobby' | 'punching' | 'done';

/**
 * The original plugin's client, as a sans-IO state machine: `now` comes in with every call,
 * datagrams and events go out through `poll()`. One socket at a time, like the original:
 * the server socket until `peers:`, then the peer socket on the public port the server saw.
 */
export class LegacyClientState {
  private readonly config: LegacyClientConfig;
  private readonly actions: LegacyClientAction[] = [];
  private phase: Phase = 'waiting';
  private startedAt = 0;
  private registerAt = Infinity;
  private nextTickAt = Infinity;
  private punchDeadline = Infinity;
  private registered = false;
  private sentClientRegistration = false;
  /** The public port the server observed; the original also listens for peers on it. */
  private ownPort = 0;
  private peers: PeerState[] = [];
  private greetsSent = 0;
  private gosSent = 0;
  private receivedGreet = false;
  private receivedConfirm = false;

  constructor(config: LegacyClientConfig) {
    this.config = config;
  }

  get finished(): boolean {
    return this.phase === 'done';
  }

  start(now: number): void {
    this.startedAt = now;
    this.phase = 'registering';
    if (this.config.role === 'host') {
      this.toServer(encodeLegacy.registerSession(this.config.session, this.config.maxPlayers));
    } else {
      this.registerAt = now + JOINER_DELAY_MS;
    }
  }

  /** Host only: ask the server to exchange peers before the lobby is full (`finalize_peers`). */
  finalizePeers(): void {
    if (this.config.role === 'host' && this.phase !== 'done' && this.phase !== 'punching') {
      this.toServer(encodeLegacy.exchangePeers(this.config.session));
    }
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
      this.fail('punch_failed', `no peer answered within ${PUNCH_BUDGET_MS} ms`);
      return;
    }
    if (now >= this.nextTickAt) {
      this.nextTickAt = now + PEER_TICK_MS;
      this.tick(now);
    }
  }

  /** A datagram from the rendezvous server (on the server socket). */
  handleServer(now: number, from: Endpoint, data: Uint8Array): void {
    if (this.phase === 'done' || this.phase === 'punching') return;
    if (from.port !== this.config.server.port) return;
    const msg = decodeServerMessage(data);
    if (msg === undefined) return;
    switch (msg.type) {
      case 'ok':
        this.ownPort = msg.port;
        if (!this.registered) {
          this.registered = true;
          this.emit({ event: 'registered', publicPort: msg.port });
        }
        if (this.config.role === 'host') this.sendClientRegistration();
        this.phase = 'lobby';
        return;
      case 'lobby':
        this.emit({ event: 'lobby', players: msg.nicknames, maxPlayers: msg.maxPlayers });
        return;
      case 'close':
        this.fail('session_closed', msg.reason);
        return;
      case 'peers':
        // The later revision marks the host; the earlier one leaves it to `confirm:`.
        this.peers = msg.peers.map((p) => ({
          name: p.name,
          address: p.address,
          port: p.port,
          isHost: p.hosting === true,
        }));
        this.phase = 'punching';
        this.emit({ event: 'peers', count: this.peers.length });
        this.actions.push({ type: 'listen', port: this.ownPort });
        this.punchDeadline = now + PUNCH_BUDGET_MS;
        this.nextTickAt = now;
        this.tick(now);
        this.nextTickAt = now + PEER_TICK_MS;
        return;
    }
  }

  /** A datagram on the peer socket. */
  handlePeer(now: number, from: Endpoint, data: Uint8Array): void {
    if (this.phase !== 'punching') return;
    const msg = decodePeerMessage(data);
    if (msg === undefined) return;
    switch (msg.type) {
      case 'greet':
        if (this.receivedGreet) return;
        // The greeter reached us on `peerPort`; the original takes that as its own port and
        // re-listens there (right only when the NAT keeps ports).
        if (msg.peerPort !== this.ownPort) {
          this.ownPort = msg.peerPort;
          this.actions.push({ type: 'listen', port: this.ownPort });
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
    void from;
  }

  /** Drains what the shell must do, in order. */
  poll(): LegacyClientAction[] {
    return this.actions.splice(0, this.actions.length);
  }

  /** Leaving: `cs` from the host, `cc` from the others, like the original on failure. */
  leave(): Uint8Array {
    return this.config.role === 'host'
      ? encodeLegacy.closeSession(this.config.session, 'Host left')
      : encodeLegacy.checkOut(this.config.name);
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
            this.actions.push({
              type: 'send',
              to: { address: peer.address, port },
              data: encodeLegacy.greet(name, this.ownPort, port),
            });
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

  private fail(code: 'session_closed' | 'punch_failed', message: string): void {
    this.phase = 'done';
    this.emit({ event: 'failed', code, message });
  }

  private sendClientRegistration(): void {
    if (this.sentClientRegistration) return;
    this.sentClientRegistration = true;
    this.toServer(
      encodeLegacy.registerClient(this.config.name, this.config.session, this.config.nickname),
    );
  }

  private toServer(data: Uint8Array): void {
    this.actions.push({ type: 'send', to: this.config.server, data });
  }

  private send(peer: PeerState, data: Uint8Array): void {
    this.actions.push({ type: 'send', to: { address: peer.address, port: peer.port }, data });
  }

  private emit(event: LegacyClientEvent): void {
    this.actions.push({ type: 'event', event });
  }
}
