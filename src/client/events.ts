/**
 * What a traversal tells its shell (`TraversalEvent`) and the states it goes through. Apart
 * from the state machine: these are the core's output vocabulary, which the shell
 * (HolePunchClient), the simulator and the tests read without the machine.
 */
import type { HolePunchError } from '../errors.js';
import type { Endpoint, V2Peer } from '../protocol/index.js';
import type { ConfirmedPeer, FailedPeer } from './punch.js';

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

export type TraversalState =
  | 'idle'
  | 'registering'
  | 'lobby'
  | 'punching'
  | 'punched'
  | 'failed'
  | 'left';
