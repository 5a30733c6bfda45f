/**
 * The original HolePunch text protocol ("legacy"), byte for byte: UTF-8 text, one message per
 * datagram, fields separated by `:` (see docs/server.md and the seed PROTOCOL.md).
 *
 * Pure codec: no I/O, no clock. `decodeLegacy` never throws; it classifies every refusal so the
 * server can count it.
 *
 * Nothing in the legacy protocol is escaped, so a `:` or `,` inside a field would corrupt every
 * message that carries it. We refuse such input instead of emitting it:
 * - a `:` inside NAME, KEY or NICKNAME turns into extra fields → `too_many_fields`;
 * - a `,` inside NAME or NICKNAME (they are listed comma-separated in `peers:` and `lobby:`)
 *   → `bad_name`. KEY is never echoed, so it may contain `,`.
 * Only the last field of `cs:KEY:REASON` takes the rest of the datagram, `:` included, because
 * REASON is also the last field of the `close:REASON` it is relayed in.
 */

/** Datagrams longer than this are refused unread (the original had no limit). */
export const MAX_LEGACY_DATAGRAM_BYTES = 1024;

/** Upper bound for MAX in `rs:KEY:MAX` unless the server is configured otherwise. */
export const DEFAULT_MAX_PLAYERS_CAP = 64;

/** The original's `close:` reasons, exactly as its clients display them. */
export const CLOSE_REASONS = {
  sessionExists: 'Tried to create existing session',
  clientRegistered: 'Client already registered',
  sessionNotFound: 'Client registered for non-existing session',
  sessionFull: 'Session full',
  /** Sent to every member when a session's TTL runs out (later revision of the original). */
  sessionExpired: 'Session closed.',
  /** Sent to every member of every open session when the server stops. */
  serverShutdown: 'Server shutting down',
  /** Ours: the server's `--max-sessions` limit is reached. */
  tooManySessions: 'Too many sessions',
  /** Ours: an IPv6 address cannot be written into a legacy `peers:` entry. */
  ipv6Unsupported: 'IPv6 is not supported by the legacy protocol',
} as const;

export type LegacyClientMessage =
  | { readonly type: 'register_session'; readonly key: string; readonly maxPlayers: number }
  | {
      readonly type: 'register_client';
      readonly name: string;
      readonly key: string;
      readonly nickname: string;
    }
  | { readonly type: 'exchange_peers'; readonly key: string }
  | { readonly type: 'check_out'; readonly name: string }
  /** `reason` is undefined when the host sent `cs:KEY` without one. */
  | { readonly type: 'close_session'; readonly key: string; readonly reason: string | undefined }
  | { readonly type: 'goodbye' };

export const LEGACY_REJECTION_KINDS = [
  'empty',
  'oversized',
  'not_utf8',
  /** Control characters (C0, DEL) anywhere except one trailing newline: binary, not text. */
  'control_chars',
  'too_few_fields',
  'too_many_fields',
  /** An empty NAME or KEY. */
  'empty_field',
  /** A `,` in NAME or NICKNAME (it would split `lobby:`/`peers:` lists). */
  'bad_name',
  /** MAX not a plain decimal number, or outside 1..cap. */
  'bad_max',
  'unknown_type',
] as const;

export type LegacyRejectionKind = (typeof LEGACY_REJECTION_KINDS)[number];

export interface LegacyDecodeError {
  readonly kind: LegacyRejectionKind;
}

export type LegacyDecodeResult =
  | { readonly ok: true; readonly msg: LegacyClientMessage }
  | { readonly ok: false; readonly error: LegacyDecodeError };

export interface LegacyDecodeOptions {
  /** Largest accepted MAX in `rs` (default `DEFAULT_MAX_PLAYERS_CAP`). */
  readonly maxPlayersCap?: number;
}

// One frozen error object per kind: refusing a datagram allocates nothing.
const REJECTIONS: { readonly [K in LegacyRejectionKind]: LegacyDecodeResult } = Object.freeze(
  Object.fromEntries(
    LEGACY_REJECTION_KINDS.map((kind) => [kind, Object.freeze({ ok: false, error: { kind } })]),
  ) as { [K in LegacyRejectionKind]: LegacyDecodeResult },
);

const GOODBYE: LegacyDecodeResult = Object.freeze({ ok: true, msg: { type: 'goodbye' } as const });

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

const MAX_DIGITS = /^[0-9]{1,6}$/;

function reject(kind: LegacyRejectionKind): LegacyDecodeResult {
  return REJECTIONS[kind];
}

/** Decodes one untrusted datagram. Never throws. */
export function decodeLegacy(
  data: Uint8Array,
  options: LegacyDecodeOptions = {},
): LegacyDecodeResult {
  let length = data.length;
  if (length === 0) return reject('empty');
  if (length > MAX_LEGACY_DATAGRAM_BYTES) return reject('oversized');
  // Hand-typed test messages (`echo rs:k:2 | nc -u`) end with a newline; tolerate one.
  if (data[length - 1] === 0x0a) {
    length--;
    if (length > 0 && data[length - 1] === 0x0d) length--;
    if (length === 0) return reject('empty');
  }
  for (let i = 0; i < length; i++) {
    const byte = data[i] as number;
    if (byte < 0x20 || byte === 0x7f) return reject('control_chars');
  }
  let text: string;
  try {
    text = utf8Decoder.decode(length === data.length ? data : data.subarray(0, length));
  } catch {
    return reject('not_utf8');
  }
  return decodeLegacyText(text, options.maxPlayersCap ?? DEFAULT_MAX_PLAYERS_CAP);
}

function decodeLegacyText(text: string, maxPlayersCap: number): LegacyDecodeResult {
  const firstColon = text.indexOf(':');
  const type = firstColon === -1 ? text : text.slice(0, firstColon);
  switch (type) {
    case 'rs': {
      const fields = text.split(':');
      if (fields.length < 3) return reject('too_few_fields');
      if (fields.length > 3) return reject('too_many_fields');
      const key = fields[1] as string;
      const maxText = fields[2] as string;
      if (key === '') return reject('empty_field');
      if (!MAX_DIGITS.test(maxText)) return reject('bad_max');
      const maxPlayers = Number(maxText);
      if (maxPlayers < 1 || maxPlayers > maxPlayersCap) return reject('bad_max');
      return { ok: true, msg: { type: 'register_session', key, maxPlayers } };
    }
    case 'rc': {
      const fields = text.split(':');
      if (fields.length < 4) return reject('too_few_fields');
      if (fields.length > 4) return reject('too_many_fields');
      const name = fields[1] as string;
      const key = fields[2] as string;
      const nickname = fields[3] as string;
      if (name === '' || key === '') return reject('empty_field');
      if (name.includes(',') || nickname.includes(',')) return reject('bad_name');
      return { ok: true, msg: { type: 'register_client', name, key, nickname } };
    }
    case 'ep': {
      const fields = text.split(':');
      if (fields.length < 2) return reject('too_few_fields');
      if (fields.length > 2) return reject('too_many_fields');
      const key = fields[1] as string;
      if (key === '') return reject('empty_field');
      return { ok: true, msg: { type: 'exchange_peers', key } };
    }
    case 'cc': {
      const fields = text.split(':');
      if (fields.length < 2) return reject('too_few_fields');
      if (fields.length > 2) return reject('too_many_fields');
      const name = fields[1] as string;
      if (name === '') return reject('empty_field');
      return { ok: true, msg: { type: 'check_out', name } };
    }
    case 'cs': {
      if (firstColon === -1) return reject('too_few_fields');
      const keyEnd = text.indexOf(':', firstColon + 1);
      const key = keyEnd === -1 ? text.slice(firstColon + 1) : text.slice(firstColon + 1, keyEnd);
      if (key === '') return reject('empty_field');
      const reason = keyEnd === -1 ? undefined : text.slice(keyEnd + 1);
      return { ok: true, msg: { type: 'close_session', key, reason } };
    }
    case 'goodbye':
      return firstColon === -1 ? GOODBYE : reject('too_many_fields');
    default:
      return reject('unknown_type');
  }
}

/** One entry of a `peers:` list: another member as the server observed it. */
export interface LegacyPeerEntry {
  readonly name: string;
  /** Plain IPv4 text (see `legacyAddressText`). */
  readonly address: string;
  readonly port: number;
  readonly hosting: boolean;
}

/** `ok:PORT`: PORT is the client's source port as the server observed it. */
export function encodeOk(port: number): Uint8Array {
  return utf8Encoder.encode(`ok:${port}`);
}

/** `lobby:NICK1,NICK2,...:MAX`. Nicknames never contain `,` or `:` (the decoder refuses them). */
export function encodeLobby(nicknames: readonly string[], maxPlayers: number): Uint8Array {
  return utf8Encoder.encode(`lobby:${nicknames.join(',')}:${maxPlayers}`);
}

/** `peers:NAME:IP:PORT:HOSTING,...` with HOSTING `True`/`False` (later revision's 4th field). */
export function encodePeers(peers: readonly LegacyPeerEntry[]): Uint8Array {
  let text = 'peers:';
  for (let i = 0; i < peers.length; i++) {
    const peer = peers[i] as LegacyPeerEntry;
    if (i > 0) text += ',';
    text += `${peer.name}:${peer.address}:${peer.port}:${peer.hosting ? 'True' : 'False'}`;
  }
  return utf8Encoder.encode(text);
}

/** `close:REASON`. */
export function encodeClose(reason: string): Uint8Array {
  return utf8Encoder.encode(`close:${reason}`);
}

const IPV4_MAPPED_PREFIX = '::ffff:';

/**
 * The address as a legacy client can read it in `peers:`: IPv4 as is, IPv4-mapped IPv6
 * (`::ffff:1.2.3.4`, what a dual-stack socket reports for IPv4 senders) as plain IPv4, and
 * `undefined` for native IPv6, whose `:` would break the `:`-separated entry.
 */
export function legacyAddressText(address: string): string | undefined {
  if (!address.includes(':')) return address;
  if (
    address.length > IPV4_MAPPED_PREFIX.length &&
    address.slice(0, IPV4_MAPPED_PREFIX.length).toLowerCase() === IPV4_MAPPED_PREFIX
  ) {
    const v4 = address.slice(IPV4_MAPPED_PREFIX.length);
    if (!v4.includes(':') && v4.includes('.')) return v4;
  }
  return undefined;
}
