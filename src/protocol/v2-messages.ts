/**
 * The v2 messages as values: a discriminated union with one member per wire type, the
 * shapes of pushes and punches, and what a decode returns. Types only (and the NAT classes
 * in wire order); the bytes are in v2-encode.ts and v2-decode.ts.
 */
import type { ErrorCode } from '../errors.js';
import type { Endpoint } from './endpoint.js';

/**
 * A client's NAT mapping class (docs/protocol-v2.md §6, "Strategy"), measured with two
 * `probe`s while it registers: `eim` (endpoint-independent mapping: the same public port
 * towards every destination), `edm-sequential` (a new port per destination, close to the
 * last one: port prediction finds it), `edm-random` (a random port per destination) or
 * `unknown` (not measured). Wire: u8 0 unknown, 1 eim, 2 edm-sequential, 3 edm-random.
 */
export type NatClass = 'unknown' | 'eim' | 'edm-sequential' | 'edm-random';

export const NAT_CLASSES: readonly NatClass[] = ['unknown', 'eim', 'edm-sequential', 'edm-random'];

export interface V2Peer {
  readonly name: string;
  readonly nickname: string;
  readonly isHost: boolean;
  readonly publicEndpoint: Endpoint;
  readonly candidates: readonly Endpoint[];
  /** The peer's NAT class as it told the server; absent = `unknown`. */
  readonly nat?: NatClass;
}

/** Why a `peer_left` push says a peer is gone (wire: u8 1 = left, 2 = silent). */
export type PeerLeftWhy = 'left' | 'silent';

export type V2Message =
  | {
      type: 'host';
      requestId: number;
      session: string;
      maxPlayers: number;
      name: string;
      nickname: string;
      candidates: readonly Endpoint[];
      /** Our NAT class (absent = `unknown`; decoded only when known). */
      nat?: NatClass;
      /** The sender's revision of v2; absent = 0 (an encoder from before revisions). */
      revision?: number;
      /**
       * Revision ≥ 1: seconds the session stays open for late joiners and rejoins after its
       * start (0: it takes nobody once started, as in revision 0).
       */
      keepOpenS?: number;
      /** Revision ≥ 1: seconds of silence after which a member is gone (0: the default, 15). */
      silenceS?: number;
    }
  | {
      type: 'join';
      requestId: number;
      session: string;
      name: string;
      nickname: string;
      candidates: readonly Endpoint[];
      nat?: NatClass;
      revision?: number;
    }
  | { type: 'start'; requestId: number; session: string; token: Uint8Array }
  | { type: 'leave'; requestId: number; session: string; token: Uint8Array }
  | { type: 'close'; requestId: number; session: string; token: Uint8Array; reason: string }
  | {
      type: 'keepalive';
      requestId: number;
      session: string;
      token: Uint8Array;
      lobbyVersion: number;
    }
  | {
      type: 'peers_ack';
      requestId: number;
      session: string;
      token: Uint8Array;
      /** Revision ≥ 1: the `version` of the `peers` acked (absent: whatever was sent last). */
      version?: number;
    }
  | {
      type: 'registered';
      requestId: number;
      token: Uint8Array;
      observed: Endpoint;
      /** To a revision ≥ 1 member: send a `keepalive` this often (ms; the session's silence / 3). */
      keepaliveMs?: number;
    }
  | { type: 'ok'; requestId: number }
  | { type: 'error'; requestId: number; code: ErrorCode; message: string }
  | ({
      type: 'lobby';
      requestId: number;
      version: number;
      maxPlayers: number;
      nicknames: readonly string[];
    } & PushAuth)
  | {
      type: 'peers';
      requestId: number;
      punchKey: Uint8Array;
      /** The receiving member's own token and observed endpoint (as in `registered`). */
      token: Uint8Array;
      observed: Endpoint;
      total: number;
      first: number;
      peers: readonly V2Peer[];
      /**
       * To a revision ≥ 1 member: the list's version (a newer one replaces it: a late joiner
       * came, a member rejoined or left) and the seconds the session stays open for late
       * joiners from now (0: closed to them; keep sending keepalives while it is open).
       */
      version?: number;
      openS?: number;
    }
  | ({ type: 'closed'; requestId: number; code: ErrorCode; reason: string } & PushAuth)
  | ({
      type: 'peer_left';
      requestId: number;
      /** The member name of the peer that is gone. */
      name: string;
      /** `left`: it sent `leave`. `silent`: it stopped answering the server. */
      why: PeerLeftWhy;
    } & PushAuth)
  /**
   * NAT diagnosis (docs/protocol-v2.md, "NAT diagnosis"): what source the server saw, answered
   * from the socket the flags ask for.
   */
  | { type: 'probe'; requestId: number; changeAddress: boolean; changePort: boolean }
  | {
      type: 'probe_reply';
      requestId: number;
      observed: Endpoint;
      /** The server's alternate address (`--alt-address`), or '' when it has none. */
      altAddress: string;
      /** The server's alternate port (`--alt-port`), or 0 when it has none. */
      altPort: number;
    }
  | { type: 'relay_allocate'; requestId: number; session: string; token: Uint8Array; peer: string }
  | {
      type: 'relay_granted';
      requestId: number;
      peer: string;
      /** The relay port (on the server's address) both sides send raw datagrams to. */
      port: number;
      /** The asker's allocation id; `relay_bind` names it. */
      id: Uint8Array;
      /** The asker's bind secret (sent only to its validated endpoint). */
      bindToken: Uint8Array;
    }
  | {
      type: 'relay_bind';
      /** Revision 1: a counter, greater in every bind the member sends (`relayBindProof`). */
      requestId: number;
      id: Uint8Array;
      /** The bind tag (`relayBindProof`, revision 1) or the bare bindToken (revision 0). */
      proof: Uint8Array;
    }
  | { type: 'relay_bound'; requestId: number; id: Uint8Array }
  | {
      type: 'punch' | 'punch_ack';
      requestId: number;
      from: string;
      to: string;
      candidate: number;
      sentAt: number;
      /** The HMAC tag as received; check with `verifyPunchTag`. */
      tag: Uint8Array;
      /** The bytes the tag covers (everything before it). */
      signed: Uint8Array;
    };

export type V2MessageType = V2Message['type'];

/**
 * The server's messages to one member that end in a push tag (docs/protocol-v2.md, "Pushes
 * are authenticated"): HMAC-SHA-256 keyed with the receiving member's token over every byte
 * before the tag, truncated to 16 bytes.
 */
export type V2PushType = 'lobby' | 'closed' | 'peer_left';

/** What a decoded push carries to check it with `verifyPushTag` (like a punch's tag). */
export interface PushAuth {
  /** The tag as received. */
  tag: Uint8Array;
  /** The bytes the tag covers (everything before it). */
  signed: Uint8Array;
}

/** A push before it is tagged for one member (`encodePush`, `encodePushBody` + `sealPush`). */
export type V2PushBody = V2Message extends infer M
  ? M extends { type: V2PushType }
    ? Omit<M, 'tag' | 'signed'>
    : never
  : never;

/**
 * What `encodeV2` writes: every message but punches (`encodePunch`); a push with the tag it
 * is given (a decoded one re-encodes to its bytes). To tag a push for a member, `encodePush`.
 */
export type V2Encodable =
  | Exclude<V2Message, { type: 'punch' | 'punch_ack' | V2PushType }>
  | (V2PushBody & { tag: Uint8Array; signed?: Uint8Array });

export type V2DecodeResult =
  | { ok: true; msg: V2Message }
  | {
      ok: false;
      error: string;
      /** Set when the header was readable, so the server may answer with an `error`. */
      requestId?: number;
      /** `unsupported_version` or `bad_request` (for answers), absent for unreadable headers. */
      code?: ErrorCode;
    };

export type PeersHead = Omit<Extract<V2Message, { type: 'peers' }>, 'type' | 'peers'>;

export interface PunchFields {
  readonly type: 'punch' | 'punch_ack';
  readonly requestId: number;
  readonly from: string;
  readonly to: string;
  readonly candidate: number;
  readonly sentAt: number;
}
