/** Largest reply the echo reference is asked to send (a legacy datagram is at most 1 KiB). */
export const ECHO_MAX_REPLY_BYTES = 1500;

/** At most this many replies per request fit in the one-byte count. */
export const ECHO_MAX_REPLIES = 255;

/**
 * The request the echo reference receives in place of `request`: byte 0 = number of replies,
 * then one big-endian uint16 size per reply, then `request`'s own bytes to keep the original
 * length (the header only makes it longer when the plan has more replies than the request
 * has bytes to spare, e.g. the last join of an 8-player lobby: 35 bytes instead of ~30).
 */
export function encodeEchoRequest(request: Uint8Array, replySizes: readonly number[]): Buffer {
  if (replySizes.length > ECHO_MAX_REPLIES) throw new RangeError('too many replies for echo');
  const header = 1 + 2 * replySizes.length;
  const out = Buffer.alloc(Math.max(header, request.length));
  out.set(request.subarray(0, out.length - header), header);
  out[0] = replySizes.length;
  replySizes.forEach((size, i) => {
    if (size > ECHO_MAX_REPLY_BYTES) throw new RangeError(`echo reply of ${size} bytes`);
    out.writeUInt16BE(size, 1 + 2 * i);
  });
  return out;
}
