/**
 * The relay's `relay_bind` (docs/protocol-v2.md, "Binding"): how a relay port tells a bind
 * from relayed data, and the proof that shows the side's bindToken without revealing it.
 */

import { V2_MAGIC_BYTES } from './magic.js';
import { RELAY_BIND_BYTES, RELAY_ID_BYTES, V2_TYPES } from './v2-constants.js';
import { encodeV2 } from './v2-encode.js';
import { header } from './v2-fields.js';
import { punchTag } from './v2-tags.js';

/**
 * Whether a datagram on a relay port can be a `relay_bind` (size and type byte only): the
 * relay's hot path forwards game datagrams unchanged and decodes nothing else.
 */
export function mayBeRelayBind(data: Uint8Array): boolean {
  return data.length === RELAY_BIND_BYTES && data[V2_MAGIC_BYTES] === V2_TYPES.relay_bind;
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
