/**
 * Codec of the v2 binary protocol (docs/protocol-v2.md, section 1–2). Pure: encoders
 * build bytes, `decodeV2` never throws on untrusted input.
 */
import { createHmac } from 'node:crypto';
import { type ErrorCode, isErrorCode } from '../errors.js';
import type { Endpoint } from './endpoint.js';
import { V2_MAGIC, V2_MAGIC_BYTES } from './magic.js';

export const MAX_DATAGRAM_BYTES = 1200;
export const V2_HEADER_BYTES = V2_MAGIC_BYTES + 1 + 4;
export const TOKEN_BYTES = 16;
export const PUNCH_KEY_BYTES = 16;
export const TAG_BYTES = 16;
export const MAX_SESSION_BYTES = 64;
export const MAX_NAME_BYTES = 32;
export const MAX_NICKNAME_BYTES = 32;
export const MAX_REASON_BYTES = 200;
export const MAX_CODE_BYTES = 32;
export const MAX_ADDRESS_BYTES = 45;
export const MAX_CANDIDATES = 4;
export const MIN_PLAYERS = 2;
export const MAX_PLAYERS_WIRE = 32;
export const V2_VERSION = 2;
/**
 * The revision of v2 this codec speaks (docs/protocol-v2.md §2, "Revisions"): a client says it
 * in `host`/`join`, and the server adds the revision's trailers only to members that did, so
 * clients of revision 0 keep working unchanged.
 */
export const V2_REVISION = 1;
/** A host's `silence` (s): how long a member may say nothing before it counts as gone. */
export const MIN_SILENCE_S = 6;
export const MAX_SILENCE_S = 60;
/** A host's `keepOpen` is a u16 of seconds (about 18 hours). */
export const MAX_KEEP_OPEN_S = 0xffff;
/** A relay allocation id (one per side of a relayed pair), issued by the server. */
export const RELAY_ID_BYTES = 8;
/** The secret that proves a `relay_bind` comes from the member the allocation was given to. */
export const RELAY_BIND_TOKEN_BYTES = 16;
/**
 * A `relay_bind`'s proof: the bindToken itself (revision 0) or the bind tag made with it
 * (`relayBindProof`, revision 1), both this long.
 */
export const RELAY_BIND_PROOF_BYTES = RELAY_BIND_TOKEN_BYTES;

/** The exact size of a `relay_bind`: header, id, proof. */
export const RELAY_BIND_BYTES = V2_HEADER_BYTES + RELAY_ID_BYTES + RELAY_BIND_PROOF_BYTES;

/**
 * Whether a datagram on a relay port can be a `relay_bind` (size and type byte only): the
 * relay's hot path forwards game datagrams unchanged and decodes nothing else.
 */
export function mayBeRelayBind(data: Uint8Array): boolean {
  return data.length === RELAY_BIND_BYTES && data[V2_MAGIC_BYTES] === V2_TYPES.relay_bind;
}

export const V2_TYPES = {
  host: 0x01,
  join: 0x02,
  start: 0x03,
  leave: 0x04,
  close: 0x05,
  keepalive: 0x06,
  peers_ack: 0x07,
  registered: 0x20,
  ok: 0x21,
  error: 0x22,
  lobby: 0x23,
  peers: 0x24,
  closed: 0x25,
  peer_left: 0x26,
  punch: 0x40,
  punch_ack: 0x41,
  relay_allocate: 0x60,
  // 0x61 (relay_allocated), 0x62 (relay_data) and 0x63 (relay_close) belonged to the wrapped
  // relay and are retired: reserved, never reused (docs/protocol-v2.md §2, "Relay").
  relay_granted: 0x64,
  relay_bind: 0x65,
  relay_bound: 0x66,
  probe: 0x70,
  probe_reply: 0x71,
} as const;

/**
 * Every `probe` is exactly this long (padded with zeros): its reply is at most 105 bytes, so
 * a server answering probes from anyone sends less than twice what it received.
 */
export const PROBE_BYTES = 64;
/** `probe` flags: answer from the server's alternate address, alternate port (RFC 5780). */
export const PROBE_CHANGE_ADDRESS = 0x01;
export const PROBE_CHANGE_PORT = 0x02;

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

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Encoding is synchronous and never nested, so every `Writer` writes into this one buffer and
 * `done` copies the datagram out: a reply costs one allocation of its own size, not two.
 */
const scratch = new Uint8Array(MAX_DATAGRAM_BYTES);

class Writer {
  readonly buf = scratch;
  off = 0;
  overflow = false;

  u8(v: number): void {
    if (this.off + 1 > this.buf.length) {
      this.overflow = true;
      return;
    }
    this.buf[this.off++] = v & 0xff;
  }

  u16(v: number): void {
    this.u8(v >>> 8);
    this.u8(v);
  }

  u32(v: number): void {
    this.u8(v >>> 24);
    this.u8(v >>> 16);
    this.u8(v >>> 8);
    this.u8(v);
  }

  bytes(b: Uint8Array): void {
    if (this.off + b.length > this.buf.length) {
      this.overflow = true;
      return;
    }
    this.buf.set(b, this.off);
    this.off += b.length;
  }

  str(s: string, max: number): void {
    // Straight into the buffer when it fits (every ASCII string within both limits does).
    const room = Math.min(max, this.buf.length - this.off - 1);
    if (room >= s.length) {
      const { read, written } = encoder.encodeInto(
        s,
        this.buf.subarray(this.off + 1, this.off + 1 + room),
      );
      if (read === s.length) {
        this.buf[this.off] = written;
        this.off += 1 + written;
        return;
      }
    }
    const b = encoder.encode(s);
    if (b.length > max) throw new RangeError(`string of ${b.length} bytes exceeds ${max}`);
    this.u8(b.length);
    this.bytes(b);
  }

  endpoint(ep: Endpoint): void {
    this.str(ep.address, MAX_ADDRESS_BYTES);
    this.u16(ep.port);
  }

  endpoints(eps: readonly Endpoint[]): void {
    const n = Math.min(eps.length, MAX_CANDIDATES);
    this.u8(n);
    for (let i = 0; i < n; i++) this.endpoint(eps[i] as Endpoint);
  }

  fixed(b: Uint8Array, len: number): void {
    if (b.length !== len) throw new RangeError(`expected ${len} bytes, got ${b.length}`);
    this.bytes(b);
  }

  done(): Uint8Array {
    if (this.overflow) throw new RangeError(`datagram exceeds ${MAX_DATAGRAM_BYTES} bytes`);
    return this.buf.slice(0, this.off);
  }
}

/** Thrown inside the reader only; `decodeV2` catches it. */
class ShortRead extends Error {}

class Reader {
  readonly buf: Uint8Array;
  off = 0;

  constructor(buf: Uint8Array) {
    this.buf = buf;
  }

  need(n: number): void {
    if (this.off + n > this.buf.length) throw new ShortRead('truncated datagram');
  }

  /** Bytes are left: an optional trailer of a later revision follows. */
  more(): boolean {
    return this.off < this.buf.length;
  }

  u8(): number {
    this.need(1);
    return this.buf[this.off++] as number;
  }

  u16(): number {
    return (this.u8() << 8) | this.u8();
  }

  u32(): number {
    return ((this.u8() << 24) | (this.u8() << 16) | (this.u8() << 8) | this.u8()) >>> 0;
  }

  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return b;
  }

  str(max: number): string {
    const len = this.u8();
    if (len > max) throw new ShortRead(`string of ${len} bytes exceeds ${max}`);
    this.need(len);
    try {
      const s = strictDecoder.decode(this.buf.subarray(this.off, this.off + len));
      this.off += len;
      return s;
    } catch {
      throw new ShortRead('string is not well-formed UTF-8');
    }
  }

  endpoint(): Endpoint {
    const address = this.str(MAX_ADDRESS_BYTES);
    if (!/^[0-9A-Fa-f:.]{2,45}$/.test(address)) throw new ShortRead('bad address');
    const port = this.u16();
    if (port === 0) throw new ShortRead('port 0');
    return { address, port };
  }

  endpoints(): Endpoint[] {
    const n = this.u8();
    if (n > MAX_CANDIDATES) throw new ShortRead('too many candidates');
    const out: Endpoint[] = [];
    for (let i = 0; i < n; i++) out.push(this.endpoint());
    return out;
  }

  code(): ErrorCode {
    const c = this.str(MAX_CODE_BYTES);
    if (!isErrorCode(c)) throw new ShortRead(`unknown error code ${c}`);
    return c;
  }
}

function header(type: number, requestId: number): Writer {
  const w = new Writer();
  w.bytes(V2_MAGIC);
  w.u8(type);
  w.u32(requestId >>> 0);
  return w;
}

/**
 * Encodes one message. Throws RangeError when a field breaks a limit (a programming
 * error on the sending side; callers validate user input first with `checkName` etc.).
 * Punch messages need `encodePunch` (they carry a tag).
 */
export function encodeV2(msg: V2Encodable): Uint8Array {
  if (msg.type !== 'lobby' && msg.type !== 'closed' && msg.type !== 'peer_left') {
    return encodeBody(msg);
  }
  const body = encodeBody(msg);
  if (msg.tag.length !== TAG_BYTES) throw new RangeError(`expected ${TAG_BYTES} bytes of tag`);
  if (body.length + TAG_BYTES > MAX_DATAGRAM_BYTES) {
    throw new RangeError(`datagram exceeds ${MAX_DATAGRAM_BYTES} bytes`);
  }
  const out = new Uint8Array(body.length + TAG_BYTES);
  out.set(body);
  out.set(msg.tag, body.length);
  return out;
}

/**
 * The bytes of a push without its tag: the server encodes a broadcast once and seals it per
 * member (`sealPush`).
 */
export function encodePushBody(msg: V2PushBody): Uint8Array {
  return encodeBody(msg);
}

/** `body` (from `encodePushBody`) with the tag keyed with the receiving member's `token`. */
export function sealPush(token: Uint8Array, body: Uint8Array): Uint8Array {
  if (body.length + TAG_BYTES > MAX_DATAGRAM_BYTES) {
    throw new RangeError(`datagram exceeds ${MAX_DATAGRAM_BYTES} bytes`);
  }
  const out = new Uint8Array(body.length + TAG_BYTES);
  out.set(body);
  out.set(pushTag(token, body), body.length);
  return out;
}

/** A push's tag: HMAC-SHA-256 keyed with the member's token, 16 bytes (as a punch's). */
export function pushTag(token: Uint8Array, signed: Uint8Array): Uint8Array {
  return punchTag(token, signed);
}

/** Encodes a push to the member whose token is `token` (its tag is keyed with it). */
export function encodePush(token: Uint8Array, msg: V2PushBody): Uint8Array {
  return sealPush(token, encodePushBody(msg));
}

/**
 * True when a decoded push was tagged with `token` (constant time). A client checks every
 * `lobby`, `closed` and `peer_left` with its own token before it acts on it.
 */
export function verifyPushTag(token: Uint8Array, msg: PushAuth): boolean {
  return verifyPunchTag(token, msg.signed, msg.tag);
}

function encodeBody(msg: V2Encodable | V2PushBody): Uint8Array {
  const w = header(V2_TYPES[msg.type], msg.requestId);
  switch (msg.type) {
    case 'host':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.u8(msg.maxPlayers);
      w.str(msg.name, MAX_NAME_BYTES);
      w.str(msg.nickname, MAX_NICKNAME_BYTES);
      w.endpoints(msg.candidates);
      w.u8(natByte(msg.nat));
      if (msg.revision !== undefined) {
        w.u8(msg.revision);
        if (msg.revision >= 1) {
          w.u16(msg.keepOpenS ?? 0);
          w.u8(msg.silenceS ?? 0);
        }
      }
      break;
    case 'join':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.str(msg.name, MAX_NAME_BYTES);
      w.str(msg.nickname, MAX_NICKNAME_BYTES);
      w.endpoints(msg.candidates);
      w.u8(natByte(msg.nat));
      if (msg.revision !== undefined) w.u8(msg.revision);
      break;
    case 'start':
    case 'leave':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.fixed(msg.token, TOKEN_BYTES);
      break;
    case 'peers_ack':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.fixed(msg.token, TOKEN_BYTES);
      if (msg.version !== undefined) w.u32(msg.version >>> 0);
      break;
    case 'close':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.fixed(msg.token, TOKEN_BYTES);
      w.str(msg.reason, MAX_REASON_BYTES);
      break;
    case 'keepalive':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.fixed(msg.token, TOKEN_BYTES);
      w.u32(msg.lobbyVersion >>> 0);
      break;
    case 'registered':
      w.fixed(msg.token, TOKEN_BYTES);
      w.endpoint(msg.observed);
      if (msg.keepaliveMs !== undefined) w.u16(msg.keepaliveMs);
      break;
    case 'ok':
      break;
    case 'error':
      w.str(msg.code, MAX_CODE_BYTES);
      w.str(truncateUtf8(msg.message, MAX_REASON_BYTES), MAX_REASON_BYTES);
      break;
    case 'lobby':
      w.u32(msg.version >>> 0);
      w.u8(msg.maxPlayers);
      w.u8(msg.nicknames.length);
      for (const n of msg.nicknames) w.str(n, MAX_NICKNAME_BYTES);
      break;
    case 'peers':
      writePeersHead(w, msg, msg.peers.length);
      for (const p of msg.peers) writePeer(w, p);
      writePeersTrailer(w, msg);
      break;
    case 'closed':
      w.str(msg.code, MAX_CODE_BYTES);
      w.str(truncateUtf8(msg.reason, MAX_REASON_BYTES), MAX_REASON_BYTES);
      break;
    case 'peer_left':
      w.str(msg.name, MAX_NAME_BYTES);
      w.u8(msg.why === 'left' ? 1 : 2);
      break;
    case 'probe':
      w.u8(
        (msg.changeAddress ? PROBE_CHANGE_ADDRESS : 0) | (msg.changePort ? PROBE_CHANGE_PORT : 0),
      );
      w.bytes(new Uint8Array(PROBE_BYTES - w.off));
      break;
    case 'probe_reply':
      w.endpoint(msg.observed);
      w.str(msg.altAddress, MAX_ADDRESS_BYTES);
      w.u16(msg.altPort);
      break;
    case 'relay_allocate':
      w.str(msg.session, MAX_SESSION_BYTES);
      w.fixed(msg.token, TOKEN_BYTES);
      w.str(msg.peer, MAX_NAME_BYTES);
      break;
    case 'relay_granted':
      w.str(msg.peer, MAX_NAME_BYTES);
      w.u16(msg.port);
      w.fixed(msg.id, RELAY_ID_BYTES);
      w.fixed(msg.bindToken, RELAY_BIND_TOKEN_BYTES);
      break;
    case 'relay_bind':
      w.fixed(msg.id, RELAY_ID_BYTES);
      w.fixed(msg.proof, RELAY_BIND_PROOF_BYTES);
      break;
    case 'relay_bound':
      w.fixed(msg.id, RELAY_ID_BYTES);
      break;
  }
  return w.done();
}

function writePeer(w: Writer, p: V2Peer): void {
  w.str(p.name, MAX_NAME_BYTES);
  w.str(p.nickname, MAX_NICKNAME_BYTES);
  w.u8(p.isHost ? 1 : 0);
  w.endpoint(p.publicEndpoint);
  w.endpoints(p.candidates);
  w.u8(natByte(p.nat));
}

function natByte(nat: NatClass | undefined): number {
  return nat === undefined ? 0 : NAT_CLASSES.indexOf(nat);
}

/**
 * The `nat` u8: absent at the end of a `host`/`join` (an encoder from before the field) is 0;
 * a value above 3 is refused. Returned as a spread, empty for `unknown`, so that a message
 * without the field decodes to itself.
 */
function readNat(r: Reader, optional: boolean): { nat?: NatClass } {
  if (optional && !r.more()) return {};
  const n = r.u8();
  const nat = NAT_CLASSES[n];
  if (nat === undefined) throw new ShortRead('nat class not 0-3');
  return nat === 'unknown' ? {} : { nat };
}

/**
 * One peer as a `peers` message carries it. A server encodes each member once and sends the
 * bytes to every other member (`encodeV2Peers`): a 32-player lobby's start is then 32 encodings
 * and 992 copies, not 992 encodings.
 */
export function encodePeerEntry(p: V2Peer): Uint8Array {
  const w = new Writer();
  writePeer(w, p);
  return w.done();
}

/** A `peers` message whose peers are entries from `encodePeerEntry`. */
export function encodeV2Peers(msg: PeersHead, entries: readonly Uint8Array[]): Uint8Array {
  const w = header(V2_TYPES.peers, msg.requestId);
  writePeersHead(w, msg, entries.length);
  for (const e of entries) w.bytes(e);
  writePeersTrailer(w, msg);
  return w.done();
}

type PeersHead = Omit<Extract<V2Message, { type: 'peers' }>, 'type' | 'peers'>;

/** The revision-1 trailer of `peers`: both fields or neither. */
function writePeersTrailer(w: Writer, msg: PeersHead): void {
  if (msg.version === undefined) return;
  w.u32(msg.version >>> 0);
  w.u16(msg.openS ?? 0);
}

function writePeersHead(w: Writer, msg: PeersHead, count: number): void {
  w.fixed(msg.punchKey, PUNCH_KEY_BYTES);
  w.fixed(msg.token, TOKEN_BYTES);
  w.endpoint(msg.observed);
  w.u8(msg.total);
  w.u8(msg.first);
  w.u8(count);
}

/**
 * Header + key + token + observed endpoint (at most) + total/first/count + the revision-1
 * trailer (version, open) of a `peers` datagram.
 */
export const PEERS_FIXED_BYTES =
  V2_HEADER_BYTES + PUNCH_KEY_BYTES + TOKEN_BYTES + 1 + MAX_ADDRESS_BYTES + 2 + 3 + 6;

export interface PunchFields {
  readonly type: 'punch' | 'punch_ack';
  readonly requestId: number;
  readonly from: string;
  readonly to: string;
  readonly candidate: number;
  readonly sentAt: number;
}

/** Encodes a peer message and appends its HMAC tag made with the session punch key. */
export function encodePunch(key: Uint8Array, msg: PunchFields): Uint8Array {
  const w = header(V2_TYPES[msg.type], msg.requestId);
  w.str(msg.from, MAX_NAME_BYTES);
  w.str(msg.to, MAX_NAME_BYTES);
  w.u8(msg.candidate);
  w.u32(msg.sentAt >>> 0);
  w.bytes(punchTag(key, w.buf.subarray(0, w.off)));
  return w.done();
}

export function punchTag(key: Uint8Array, signed: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(signed).digest().subarray(0, TAG_BYTES));
}

/**
 * The proof of a revision-1 `relay_bind` (docs/protocol-v2.md, "Binding"): HMAC-SHA-256 keyed
 * with the side's bindToken over the bind's header (its request id, the counter) and its
 * allocation id, truncated to 16 bytes. It shows the bindToken without revealing it, and
 * binds it to this counter: a captured bind replays only as itself.
 */
export function relayBindProof(
  bindToken: Uint8Array,
  requestId: number,
  id: Uint8Array,
): Uint8Array {
  const w = header(V2_TYPES.relay_bind, requestId);
  w.fixed(id, RELAY_ID_BYTES);
  return punchTag(bindToken, w.buf.subarray(0, w.off));
}

/** A revision-1 `relay_bind`: counter `requestId`, signed with `bindToken`. */
export function encodeRelayBind(
  bindToken: Uint8Array,
  requestId: number,
  id: Uint8Array,
): Uint8Array {
  return encodeV2({
    type: 'relay_bind',
    requestId,
    id,
    proof: relayBindProof(bindToken, requestId, id),
  });
}

/** Constant-time comparison of the received tag with the expected one. */
export function verifyPunchTag(key: Uint8Array, signed: Uint8Array, tag: Uint8Array): boolean {
  const expected = punchTag(key, signed);
  if (tag.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= (expected[i] as number) ^ (tag[i] as number);
  return diff === 0;
}

const TYPE_BY_CODE = new Map<number, V2MessageType>(
  Object.entries(V2_TYPES).map(([name, code]) => [code, name as V2MessageType]),
);

/** Decodes one untrusted datagram. Never throws. */
export function decodeV2(data: Uint8Array): V2DecodeResult {
  if (data.length < V2_HEADER_BYTES) return { ok: false, error: 'shorter than a v2 header' };
  if (data[0] !== 0x89 || data[1] !== 0x48 || data[2] !== 0x50) {
    return { ok: false, error: 'no v2 magic' };
  }
  const r = new Reader(data);
  r.off = V2_MAGIC_BYTES;
  const typeCode = r.u8();
  const requestId = r.u32();
  if (data[3] !== V2_VERSION) {
    return {
      ok: false,
      error: `protocol version ${data[3]} not supported`,
      requestId,
      code: 'unsupported_version',
    };
  }
  if (data.length > MAX_DATAGRAM_BYTES) {
    return { ok: false, error: 'datagram too large', requestId, code: 'bad_request' };
  }
  const type = TYPE_BY_CODE.get(typeCode);
  if (type === undefined) {
    return {
      ok: false,
      error: `unknown or reserved message type 0x${typeCode.toString(16)}`,
      requestId,
      code: 'bad_request',
    };
  }
  try {
    const msg = readBody(r, type, requestId);
    if (r.off !== data.length && !isRegisterTail(msg, data, r.off)) {
      return { ok: false, error: 'trailing bytes', requestId, code: 'bad_request' };
    }
    return { ok: true, msg };
  } catch (err) {
    const error = err instanceof ShortRead ? err.message : 'malformed datagram';
    return { ok: false, error, requestId, code: 'bad_request' };
  }
}

function readBody(r: Reader, type: V2MessageType, requestId: number): V2Message {
  switch (type) {
    case 'host': {
      const session = r.str(MAX_SESSION_BYTES);
      const maxPlayers = r.u8();
      return {
        type,
        requestId,
        session,
        maxPlayers,
        name: r.str(MAX_NAME_BYTES),
        nickname: r.str(MAX_NICKNAME_BYTES),
        candidates: r.endpoints(),
        ...readNat(r, true),
        ...readHostRevision(r),
      };
    }
    case 'join':
      return {
        type,
        requestId,
        session: r.str(MAX_SESSION_BYTES),
        name: r.str(MAX_NAME_BYTES),
        nickname: r.str(MAX_NICKNAME_BYTES),
        candidates: r.endpoints(),
        ...readNat(r, true),
        ...readRevision(r),
      };
    case 'start':
    case 'leave':
      return { type, requestId, session: r.str(MAX_SESSION_BYTES), token: r.bytes(TOKEN_BYTES) };
    case 'peers_ack':
      return {
        type,
        requestId,
        session: r.str(MAX_SESSION_BYTES),
        token: r.bytes(TOKEN_BYTES),
        ...(r.more() ? { version: r.u32() } : {}),
      };
    case 'close':
      return {
        type,
        requestId,
        session: r.str(MAX_SESSION_BYTES),
        token: r.bytes(TOKEN_BYTES),
        reason: r.str(MAX_REASON_BYTES),
      };
    case 'keepalive':
      return {
        type,
        requestId,
        session: r.str(MAX_SESSION_BYTES),
        token: r.bytes(TOKEN_BYTES),
        lobbyVersion: r.u32(),
      };
    case 'registered':
      return {
        type,
        requestId,
        token: r.bytes(TOKEN_BYTES),
        observed: r.endpoint(),
        ...(r.more() ? { keepaliveMs: r.u16() } : {}),
      };
    case 'ok':
      return { type, requestId };
    case 'error':
      return { type, requestId, code: r.code(), message: r.str(MAX_REASON_BYTES) };
    case 'lobby': {
      const version = r.u32();
      const maxPlayers = r.u8();
      const count = r.u8();
      const nicknames: string[] = [];
      for (let i = 0; i < count; i++) nicknames.push(r.str(MAX_NICKNAME_BYTES));
      return { type, requestId, version, maxPlayers, nicknames, ...readPushTag(r) };
    }
    case 'peers': {
      const punchKey = r.bytes(PUNCH_KEY_BYTES);
      const token = r.bytes(TOKEN_BYTES);
      const observed = r.endpoint();
      const total = r.u8();
      const first = r.u8();
      const count = r.u8();
      if (first + count > total) throw new ShortRead('peer slice beyond total');
      const peers: V2Peer[] = [];
      for (let i = 0; i < count; i++) {
        const name = r.str(MAX_NAME_BYTES);
        const nickname = r.str(MAX_NICKNAME_BYTES);
        const isHost = r.u8();
        if (isHost > 1) throw new ShortRead('isHost not 0/1');
        peers.push({
          name,
          nickname,
          isHost: isHost === 1,
          publicEndpoint: r.endpoint(),
          candidates: r.endpoints(),
          ...readNat(r, false),
        });
      }
      const trailer = r.more() ? { version: r.u32(), openS: r.u16() } : {};
      return { type, requestId, punchKey, token, observed, total, first, peers, ...trailer };
    }
    case 'closed':
      return {
        type,
        requestId,
        code: r.code(),
        reason: r.str(MAX_REASON_BYTES),
        ...readPushTag(r),
      };
    case 'peer_left': {
      const name = r.str(MAX_NAME_BYTES);
      const why = r.u8();
      if (why !== 1 && why !== 2) throw new ShortRead('peer_left reason not 1/2');
      return { type, requestId, name, why: why === 1 ? 'left' : 'silent', ...readPushTag(r) };
    }
    case 'probe': {
      if (r.buf.length !== PROBE_BYTES) throw new ShortRead(`a probe is ${PROBE_BYTES} bytes`);
      const flags = r.u8();
      if ((flags & ~(PROBE_CHANGE_ADDRESS | PROBE_CHANGE_PORT)) !== 0) {
        throw new ShortRead('unknown probe flags');
      }
      r.bytes(PROBE_BYTES - r.off);
      return {
        type,
        requestId,
        changeAddress: (flags & PROBE_CHANGE_ADDRESS) !== 0,
        changePort: (flags & PROBE_CHANGE_PORT) !== 0,
      };
    }
    case 'probe_reply': {
      const observed = r.endpoint();
      const altAddress = r.str(MAX_ADDRESS_BYTES);
      if (altAddress !== '' && !/^[0-9A-Fa-f:.]{2,45}$/.test(altAddress)) {
        throw new ShortRead('bad alternate address');
      }
      return { type, requestId, observed, altAddress, altPort: r.u16() };
    }
    case 'relay_allocate':
      return {
        type,
        requestId,
        session: r.str(MAX_SESSION_BYTES),
        token: r.bytes(TOKEN_BYTES),
        peer: r.str(MAX_NAME_BYTES),
      };
    case 'relay_granted': {
      const peer = r.str(MAX_NAME_BYTES);
      const port = r.u16();
      if (port === 0) throw new ShortRead('port 0');
      return {
        type,
        requestId,
        peer,
        port,
        id: r.bytes(RELAY_ID_BYTES),
        bindToken: r.bytes(RELAY_BIND_TOKEN_BYTES),
      };
    }
    case 'relay_bind':
      return {
        type,
        requestId,
        id: r.bytes(RELAY_ID_BYTES),
        proof: r.bytes(RELAY_BIND_PROOF_BYTES),
      };
    case 'relay_bound':
      return { type, requestId, id: r.bytes(RELAY_ID_BYTES) };
    case 'punch':
    case 'punch_ack': {
      const from = r.str(MAX_NAME_BYTES);
      const to = r.str(MAX_NAME_BYTES);
      const candidate = r.u8();
      const sentAt = r.u32();
      const signedEnd = r.off;
      const tag = r.bytes(TAG_BYTES);
      const signed = r.buf.slice(0, signedEnd);
      return { type, requestId, from, to, candidate, sentAt, tag, signed };
    }
  }
}

/**
 * The `rev` u8 of a `join` (and `host`), read only when bytes are left: absent or 0 (the zero
 * padding) is revision 0, decoded as no field so that such a message decodes to itself.
 */
function readRevision(r: Reader): { revision?: number } {
  if (!r.more()) return {};
  const revision = r.u8();
  return revision === 0 ? {} : { revision };
}

/** A `host`'s revision and, from revision 1 on, its `keepOpen` u16 and `silence` u8. */
function readHostRevision(r: Reader): { revision?: number; keepOpenS?: number; silenceS?: number } {
  const { revision } = readRevision(r);
  if (revision === undefined) return {};
  return { revision, keepOpenS: r.u16(), silenceS: r.u8() };
}

/** The tag that ends a push, and the bytes it covers. */
function readPushTag(r: Reader): PushAuth {
  const signedEnd = r.off;
  const tag = r.bytes(TAG_BYTES);
  return { tag, signed: r.buf.slice(0, signedEnd) };
}

/**
 * `host` and `join` may end in zero bytes (docs/protocol-v2.md §2): a server answers an
 * unvalidated source with at most 3× what it received, and `registered` to a long IPv6 source
 * is 73 bytes, so clients pad both to `MIN_REGISTER_REQUEST_BYTES`.
 */
export const MIN_REGISTER_REQUEST_BYTES = 64;

/**
 * What may follow the last known field of a `host`/`join`: zero padding, or anything when the
 * sender speaks a newer revision than this codec (its extra fields, docs/protocol-v2.md §2,
 * "Revisions": the receiver acts on the fields of its own revision).
 */
function isRegisterTail(msg: V2Message, data: Uint8Array, from: number): boolean {
  if (msg.type !== 'host' && msg.type !== 'join') return false;
  if ((msg.revision ?? 0) > V2_REVISION) return true;
  for (let i = from; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/** `bytes` (an encoded `host`/`join`) with zero bytes appended up to `MIN_REGISTER_REQUEST_BYTES`. */
export function padRegisterRequest(bytes: Uint8Array): Uint8Array {
  if (bytes.length >= MIN_REGISTER_REQUEST_BYTES) return bytes;
  const padded = new Uint8Array(MIN_REGISTER_REQUEST_BYTES);
  padded.set(bytes);
  return padded;
}

/** Lower-case hex of `bytes`: the map key of a token or relay allocation id, on both sides. */
export function bytesKey(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Cuts a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (encoder.encode(s).length <= maxBytes) return s;
  let out = '';
  let used = 0;
  for (const ch of s) {
    const n = encoder.encode(ch).length;
    if (used + n > maxBytes) break;
    out += ch;
    used += n;
  }
  return out;
}

/** UTF-8 byte length (for validating user input before encoding). */
export function utf8Bytes(s: string): number {
  return encoder.encode(s).length;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` is non-empty, at most `maxBytes` of UTF-8 and has no lone surrogates. */
export function isValidField(s: string, maxBytes: number, allowEmpty = false): boolean {
  if (typeof s !== 'string') return false;
  if (!allowEmpty && s.length === 0) return false;
  if (LONE_SURROGATE.test(s)) return false;
  return utf8Bytes(s) <= maxBytes;
}
