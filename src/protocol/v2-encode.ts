/**
 * Encoding of v2 messages into datagrams: one message (`encodeV2`), a push's untagged body,
 * the `peers` list from per-member entries encoded once, and the padding of `host`/`join`.
 */
import {
  MAX_ADDRESS_BYTES,
  MAX_CODE_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_NAME_BYTES,
  MAX_NICKNAME_BYTES,
  MAX_REASON_BYTES,
  MAX_SESSION_BYTES,
  PROBE_BYTES,
  PROBE_CHANGE_ADDRESS,
  PROBE_CHANGE_PORT,
  PUNCH_KEY_BYTES,
  RELAY_BIND_PROOF_BYTES,
  RELAY_BIND_TOKEN_BYTES,
  RELAY_ID_BYTES,
  TAG_BYTES,
  TOKEN_BYTES,
  V2_HEADER_BYTES,
  V2_TYPES,
} from './v2-constants.js';
import { header, truncateUtf8, Writer } from './v2-fields.js';
import {
  NAT_CLASSES,
  type NatClass,
  type PeersHead,
  type V2Encodable,
  type V2Peer,
  type V2PushBody,
} from './v2-messages.js';

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

/**
 * `host` and `join` may end in zero bytes (docs/protocol-v2.md §2): a server answers an
 * unvalidated source with at most 3× what it received, and `registered` to a long IPv6 source
 * is 73 bytes, so clients pad both to `MIN_REGISTER_REQUEST_BYTES`.
 */
export const MIN_REGISTER_REQUEST_BYTES = 64;

/** `bytes` (an encoded `host`/`join`) with zero bytes appended up to `MIN_REGISTER_REQUEST_BYTES`. */
export function padRegisterRequest(bytes: Uint8Array): Uint8Array {
  if (bytes.length >= MIN_REGISTER_REQUEST_BYTES) return bytes;
  const padded = new Uint8Array(MIN_REGISTER_REQUEST_BYTES);
  padded.set(bytes);
  return padded;
}
