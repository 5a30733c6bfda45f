/**
 * The numbers of the v2 wire (docs/protocol-v2.md): sizes and limits of every field, the
 * version and revision, the message type codes and the probe flags. Apart so that each is
 * defined once and every part of the codec reads the same ones.
 */
import { V2_MAGIC_BYTES } from './magic.js';

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
