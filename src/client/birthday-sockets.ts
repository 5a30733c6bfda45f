/**
 * The hard side's birthday sockets (docs/protocol-v2.md §6, "Strategy", birthday probing): opened for the
 * probe, then after the punch the one (or few) the peer reached kept as the game's, the
 * others closed. Apart from the traversal because it is the one part of the client that owns
 * sockets besides the main one, and its rules (which socket is the game's, which datagrams
 * are game data, when the rest close) are one concern. Sans-IO: it returns the sockets to
 * bind or unbind, and the traversal hands them to the driver as work.
 */
import { MAIN_SOCKET, type SocketId } from '../core/index.js';
import { BIRTHDAY_SOCKETS, type PunchAttempt } from './punch.js';

export class BirthdaySockets {
  /**
   * Our birthday sockets neither kept nor closed yet. The array handed to the punch
   * (`open`) is this one: the punch probes from it.
   */
  #open: SocketId[] = [];
  /**
   * Once the punch settled: when the birthday sockets the peer has not reached by then close
   * (the end of the punch's linger); until then one it reaches is kept.
   */
  #closeAt = Number.POSITIVE_INFINITY;
  /** The socket the game's datagrams leave from: a birthday hit's socket, or the main one. */
  #game: SocketId = MAIN_SOCKET;
  /** Birthday sockets kept open after the punch (hit by the peer): their datagrams are game data. */
  readonly #kept = new Set<SocketId>();

  get gameSocket(): SocketId {
    return this.#game;
  }

  /** When the sockets not kept close (`close`), or `Infinity`. */
  get closeAt(): number {
    return this.#closeAt;
  }

  /** The punch settled and the sockets linger: a socket the peer reaches now is kept. */
  get lingering(): boolean {
    return this.#closeAt < Number.POSITIVE_INFINITY;
  }

  /** Datagrams on `socket` that are not protocol are the game's. */
  carriesGame(socket: SocketId): boolean {
    return socket === MAIN_SOCKET || this.#kept.has(socket);
  }

  /**
   * Sockets 1..BIRTHDAY_SOCKETS on any port (the traversal binds each): the list the punch
   * probes from.
   */
  open(): readonly SocketId[] {
    for (let socket = 1; socket <= BIRTHDAY_SOCKETS; socket++) this.#open.push(socket);
    return this.#open;
  }

  /** A birthday socket that could not be bound is left out (the others still try). */
  bindFailed(socket: SocketId): void {
    this.#open = this.#open.filter((s) => s !== socket);
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
   * counts: the others close at once. Returns the sockets to unbind now.
   */
  settle(now: number, punch: PunchAttempt): SocketId[] {
    if (this.#open.length === 0) return [];
    const hits = punch.hitSockets;
    let keep: SocketId = hits[0] ?? MAIN_SOCKET;
    let relayed = false;
    for (const p of punch.confirmed) {
      if (p.path === 'birthday') keep = punch.socketOf(p.name);
      if (p.path === 'relay') relayed = true;
    }
    if (relayed) keep = MAIN_SOCKET;
    this.#game = keep;
    if (keep !== MAIN_SOCKET) this.keepHits([keep]);
    if (relayed || !punch.answering) return this.close();
    this.keepHits(hits);
    this.#closeAt = Math.max(now, punch.lingerUntil);
    return [];
  }

  /** Moves `sockets` that are still open from the birthday sockets to the kept ones. */
  keepHits(sockets: readonly SocketId[]): void {
    for (const socket of sockets) {
      const i = this.#open.indexOf(socket);
      if (i < 0) continue;
      this.#open.splice(i, 1);
      this.#kept.add(socket);
    }
  }

  /** Closes every birthday socket not kept: returns them, to unbind. */
  close(): SocketId[] {
    const closing = this.#open;
    this.#open = [];
    this.#closeAt = Number.POSITIVE_INFINITY;
    return closing;
  }
}
