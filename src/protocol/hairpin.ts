/**
 * The doctor's hairpin datagram (docs/protocol-v2.md, "NAT diagnosis"): ASCII
 * `hp-hairpin:NONCE`, sent by one of the doctor's sockets to another one's public mapping.
 * It never reaches a server, so it carries no v2 header; the nonce (chosen per diagnosis)
 * tells it apart from anything else that reaches the socket.
 */

const HAIRPIN_PREFIX = 'hp-hairpin:';
const encoder = new TextEncoder();

/** `hp-hairpin:NONCE`. */
export function encodeHairpinProbe(nonce: string): Uint8Array {
  return encoder.encode(`${HAIRPIN_PREFIX}${nonce}`);
}

/** True when `data` is exactly the hairpin datagram `encodeHairpinProbe(nonce)` makes. */
export function isHairpinProbe(data: Uint8Array, nonce: string): boolean {
  const expected = encodeHairpinProbe(nonce);
  if (data.length !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (data[i] !== expected[i]) return false;
  return true;
}
