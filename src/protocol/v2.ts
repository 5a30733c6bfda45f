/**
 * Codec of the v2 binary protocol (docs/protocol-v2.md, section 1–2). Pure: encoders
 * build bytes, `decodeV2` never throws on untrusted input.
 *
 * This file is the codec's public face; its parts are split by concept: constants,
 * messages, fields (reader/writer), encode, decode, tags (HMAC) and the relay bind.
 */
export {
  MAX_ADDRESS_BYTES,
  MAX_CANDIDATES,
  MAX_CODE_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_KEEP_OPEN_S,
  MAX_NAME_BYTES,
  MAX_NICKNAME_BYTES,
  MAX_PLAYERS_WIRE,
  MAX_REASON_BYTES,
  MAX_SESSION_BYTES,
  MAX_SILENCE_S,
  MIN_PLAYERS,
  MIN_SILENCE_S,
  PROBE_BYTES,
  PROBE_CHANGE_ADDRESS,
  PROBE_CHANGE_PORT,
  PUNCH_KEY_BYTES,
  RELAY_BIND_BYTES,
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
export { decodeV2 } from './v2-decode.js';
export {
  encodePeerEntry,
  encodePushBody,
  encodeV2,
  encodeV2Peers,
  MIN_REGISTER_REQUEST_BYTES,
  PEERS_FIXED_BYTES,
  padRegisterRequest,
} from './v2-encode.js';
export {
  bytesKey,
  isValidField,
  truncateUtf8,
  utf8Bytes,
} from './v2-fields.js';
export {
  NAT_CLASSES,
  type NatClass,
  type PeerLeftWhy,
  type PunchFields,
  type PushAuth,
  type V2DecodeResult,
  type V2Encodable,
  type V2Message,
  type V2MessageType,
  type V2Peer,
  type V2PushBody,
  type V2PushType,
} from './v2-messages.js';
export {
  encodeRelayBind,
  mayBeRelayBind,
  relayBindProof,
} from './v2-relay-bind.js';
export {
  encodePunch,
  encodePush,
  punchTag,
  pushTag,
  sealPush,
  verifyPunchTag,
  verifyPushTag,
} from './v2-tags.js';
