/**
 * Every v2 datagram starts with these bytes. 0x89 is a UTF-8 continuation byte, so no
 * legacy text message (which starts with two ASCII letters) can ever begin with it;
 * the server tells the two protocols apart by the first byte alone.
 * Byte 3 is the protocol version.
 */
export const V2_MAGIC = Uint8Array.of(0x89, 0x48, 0x50, 0x02); // 0x89 'H' 'P' version 2

export const V2_MAGIC_BYTES = V2_MAGIC.length;

/** True when `data` starts with the v2 magic's first three bytes (any version). */
export function hasV2Prefix(data: Uint8Array): boolean {
  return data.length >= 3 && data[0] === 0x89 && data[1] === 0x48 && data[2] === 0x50;
}
