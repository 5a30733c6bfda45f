/**
 * The field reader and writer of the v2 codec (u8/u16/u32, length-prefixed UTF-8, endpoints,
 * fixed byte strings) and the checks of text fields. Apart so that encode and decode share
 * one definition of how each kind of field is laid out.
 */

import { type ErrorCode, isErrorCode } from '../errors.js';
import type { Endpoint } from './endpoint.js';
import { V2_MAGIC } from './magic.js';
import {
  MAX_ADDRESS_BYTES,
  MAX_CANDIDATES,
  MAX_CODE_BYTES,
  MAX_DATAGRAM_BYTES,
} from './v2-constants.js';

const encoder = new TextEncoder();

const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Encoding is synchronous and never nested, so every `Writer` writes into this one buffer and
 * `done` copies the datagram out: a reply costs one allocation of its own size, not two.
 */
const scratch = new Uint8Array(MAX_DATAGRAM_BYTES);

export class Writer {
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
export class ShortRead extends Error {}

export class Reader {
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

export function header(type: number, requestId: number): Writer {
  const w = new Writer();
  w.bytes(V2_MAGIC);
  w.u8(type);
  w.u32(requestId >>> 0);
  return w;
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
