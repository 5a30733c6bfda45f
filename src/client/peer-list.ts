/**
 * The peer list as it arrives: in parts (`first`, `total`; docs/protocol-v2.md §2, "Server → client"),
 * re-pushed until acknowledged, and in an open session in newer versions as members come and
 * go. Apart from the traversal because putting the parts together and telling a stale copy
 * from a newer list is one small rule set of its own. Pure.
 */
import type { V2Message, V2Peer } from '../protocol/index.js';

/** A complete list: its members, its version, and whether it is newer than the last one. */
export interface CompletePeerList {
  readonly peers: V2Peer[];
  readonly version: number;
  readonly newer: boolean;
}

export class PeerListParts {
  readonly #parts = new Map<number, V2Peer>();
  /** The version of the newest complete peer list, and of the parts being assembled. */
  #version = 0;
  #partsVersion = 0;

  /**
   * One `peers` datagram: the whole list once every part is in (every complete copy, so a
   * server whose earlier ack got lost is acked again), else `undefined`.
   */
  add(msg: Extract<V2Message, { type: 'peers' }>): CompletePeerList | undefined {
    const version = msg.version ?? 0;
    // An older list than the one we act on (a re-push that crossed a newer one): stale.
    if (version < this.#version) return undefined;
    if (version !== this.#partsVersion) {
      this.#parts.clear();
      this.#partsVersion = version;
    }
    for (let i = 0; i < msg.peers.length; i++) {
      this.#parts.set(msg.first + i, msg.peers[i] as V2Peer);
    }
    const peers: V2Peer[] = [];
    for (let i = 0; i < msg.total; i++) {
      const p = this.#parts.get(i);
      if (p === undefined) return undefined;
      peers.push(p);
    }
    const newer = version > this.#version;
    this.#version = version;
    return { peers, version, newer };
  }
}
