/**
 * Decoding of one untrusted v2 datagram (`decodeV2`, never throws): the header checks, the
 * body of each type and the optional trailers of later revisions.
 */

import { V2_MAGIC_BYTES } from './magic.js';
import {
  MAX_ADDRESS_BYTES,
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
  V2_REVISION,
  V2_TYPES,
  V2_VERSION,
} from './v2-constants.js';
import { Reader, ShortRead } from './v2-fields.js';
import {
  NAT_CLASSES,
  type NatClass,
  type PushAuth,
  type V2DecodeResult,
  type V2Message,
  type V2MessageType,
  type V2Peer,
} from './v2-messages.js';

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
