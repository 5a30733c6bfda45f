/**
 * The HMAC tags of the v2 wire: punches are tagged with the session's punch key, pushes with
 * the receiving member's token (docs/protocol-v2.md). The codec's one use of `node:crypto`,
 * kept apart so the rest of it stays free of `node:` imports.
 */

import { createHmac } from 'node:crypto';
import { MAX_DATAGRAM_BYTES, MAX_NAME_BYTES, TAG_BYTES, V2_TYPES } from './v2-constants.js';
import { encodePushBody } from './v2-encode.js';
import { header } from './v2-fields.js';
import type { PunchFields, PushAuth, V2PushBody } from './v2-messages.js';

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

/** Constant-time comparison of the received tag with the expected one. */
export function verifyPunchTag(key: Uint8Array, signed: Uint8Array, tag: Uint8Array): boolean {
  const expected = punchTag(key, signed);
  if (tag.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= (expected[i] as number) ^ (tag[i] as number);
  return diff === 0;
}
