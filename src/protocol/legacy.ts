/**
 * The original HolePunch text protocol ("legacy"), byte for byte: UTF-8 text, one message per
 * datagram, fields separated by `:` (docs/server.md, "The legacy protocol").
 *
 * Pure codec: no I/O, no clock. `decodeLegacy` never throws; it classifies every refusal so the
 * server can count it.
 *
 * Fields are read the way the original server read them (Python's `split(":")` and an index):
 * fields past the ones a message uses are ignored, so a NICKNAME or REASON typed with a `:` is
 * cut there, and `rc:NAME:KEY` (the three-field registration of the plugin's master revisions)
 * is a registration whose NICKNAME is NAME. What the original relayed unescaped and so let one
 * player corrupt everyone's lists, a `,` in NAME or NICKNAME, is not decoded as an error here
 * but refused by the session table with a `close:` line the player can show
 * (`legacyNameProblem`).
 */

/** Datagrams longer than this are refused unread (the original had no limit). */
export const MAX_LEGACY_DATAGRAM_BYTES = 1024;

/**
 * Longest NAME in bytes. The plugins send a game-chosen id (often `OS.get_unique_id()`: 32 hex
 * characters on Linux, 36 on Windows); it is relayed in every `peers:` entry.
 */
export const MAX_LEGACY_NAME_BYTES = 64;

/**
 * Longest NICKNAME in bytes: a name typed by a player, relayed to every member in each
 * `lobby:`. 32 bytes hold any nickname the original's lobby UI shows; more only makes each
 * forged membership change worth more bytes out (docs/security.md).
 */
export const MAX_LEGACY_NICKNAME_BYTES = 32;

/**
 * Largest MAX a legacy session may have. The original plugins hard-code 2 players
 * (`MAX_PLAYER_COUNT`) and their peer handshake is unreliable beyond a few; every member of a
 * lobby receives every `lobby:` update and `peers:` lists every member, so this bounds what
 * one session can make the server send (docs/security.md). `--max-players` can only lower it.
 */
export const LEGACY_MAX_PLAYERS = 16;

/** Upper bound for MAX in `rs:KEY:MAX` unless the server is configured otherwise. */
export const DEFAULT_MAX_PLAYERS_CAP = 64;

/**
 * The `close:` reasons, exactly as the original's clients display them. The original built
 * its refusals from `repr()` of the reason (`ServerFail.__str__`), so a game shows
 * `Disconnected: 'Session full'`, quotes included; our own refusals are written the same way.
 */
export const CLOSE_REASONS = {
  sessionExists: "'Tried to create existing session'",
  clientRegistered: "'Client already registered'",
  sessionNotFound: "'Client registered for non-existing session'",
  sessionFull: "'Session full'",
  /** Sent to every member when a session's TTL runs out (later revision of the original). */
  sessionExpired: 'Session closed.',
  /** Sent to every member of every open session when the server stops. */
  serverShutdown: 'Server shutting down',
  /** Ours: the server's `--max-sessions` limit is reached. */
  tooManySessions: "'Too many sessions'",
  /** Ours: the memory budget for session state is spent (docs/security.md). */
  serverFull: "'Server full'",
  /** Ours: the sender's address has used up its session or member quota for now. */
  sourceQuota: "'Too many sessions or players from your address, try again later'",
  /** Ours: an IPv6 address cannot be written into a legacy `peers:` entry. */
  ipv6Unsupported: "'IPv6 is not supported by the legacy protocol'",
  /** Ours: a `,` in NAME or NICKNAME would split the `peers:`/`lobby:` lists. */
  commaInName: "'Names and nicknames may not contain a comma'",
  /** Ours: NAME or NICKNAME over `MAX_LEGACY_NAME_BYTES` / `MAX_LEGACY_NICKNAME_BYTES`. */
  nameTooLong: "'Name or nickname too long'",
} as const;

export type LegacyClientMessage =
  | { readonly type: 'register_session'; readonly key: string; readonly maxPlayers: number }
  | {
      readonly type: 'register_client';
      readonly name: string;
      readonly key: string;
      /** NAME when the plugin sent none (`rc:NAME:KEY`, master revisions). */
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
  /** Largest accepted MAX in `rs` (default `LEGACY_MAX_PLAYERS`). */
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

/**
 * UTF-8 bytes of an outgoing message. Replies are nearly always ASCII (ports, addresses,
 * ASCII names), and for those a plain loop is ~10× cheaper than `TextEncoder.encode`, whose
 * fixed cost (~0.5 µs a call) was 3 % of the server's CPU under lobby load (npm run bench
 * --profile). Any non-ASCII character falls back to the encoder.
 */
export function encodeLegacyText(text: string): Uint8Array {
  const length = text.length;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return utf8Encoder.encode(text);
    bytes[i] = code;
  }
  return bytes;
}

const MAX_DIGITS = /^[0-9]{1,6}$/;

function reject(kind: LegacyRejectionKind): LegacyDecodeResult {
  return REJECTIONS[kind];
}

/** Most `:` any message reads up to: `rc:NAME:KEY:NICKNAME:` ends its last field. */
const MAX_COLONS_READ = 4;

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
  // One pass finds the first four `:` (field i ends at colons[i + 1], or at the end) and
  // refuses binary. `:` (0x3a) never occurs inside a multi-byte UTF-8 sequence, so byte offsets
  // split fields exactly.
  const colons = [length, length, length, length];
  let count = 0;
  for (let i = 0; i < length; i++) {
    const byte = data[i] as number;
    if (byte < 0x20 || byte === 0x7f) return reject('control_chars');
    if (byte === 0x3a && count < MAX_COLONS_READ) colons[count++] = i;
  }
  const type = messageType(data, colons[0] as number);
  if (type === undefined) return reject('unknown_type');
  if (count < FIELDS_NEEDED[type]) return reject('too_few_fields');
  // Field k (1-based after the type) runs from just after colon k-1 to colon k or the end.
  const at = (k: number): string | undefined =>
    field(data, (colons[k - 1] as number) + 1, colons[k] as number);
  // Each field is decoded on its own: a fresh flat string, not a slice that would keep the
  // whole datagram's text alive as long as the session holds the field.
  switch (type) {
    case 'rs': {
      const key = at(1);
      const maxText = at(2);
      if (key === undefined || maxText === undefined) return reject('not_utf8');
      if (!MAX_DIGITS.test(maxText)) return reject('bad_max');
      const maxPlayers = Number(maxText);
      const cap = options.maxPlayersCap ?? LEGACY_MAX_PLAYERS;
      if (maxPlayers < 1 || maxPlayers > cap) return reject('bad_max');
      return { ok: true, msg: { type: 'register_session', key, maxPlayers } };
    }
    case 'rc': {
      const name = at(1);
      const key = at(2);
      const nickname = count >= 3 ? at(3) : name;
      if (name === undefined || key === undefined || nickname === undefined) {
        return reject('not_utf8');
      }
      return { ok: true, msg: { type: 'register_client', name, key, nickname } };
    }
    case 'ep':
    case 'cc': {
      const value = at(1);
      if (value === undefined) return reject('not_utf8');
      return type === 'ep'
        ? { ok: true, msg: { type: 'exchange_peers', key: value } }
        : { ok: true, msg: { type: 'check_out', name: value } };
    }
    case 'cs': {
      const key = at(1);
      const reason = count >= 2 ? at(2) : '';
      if (key === undefined || reason === undefined) return reject('not_utf8');
      return {
        ok: true,
        msg: { type: 'close_session', key, reason: count >= 2 ? reason : undefined },
      };
    }
    case 'goodbye':
      return GOODBYE;
  }
}

/**
 * Why NAME or NICKNAME cannot be relayed in `peers:`/`lobby:`, as its `close:` reason. A
 * NICKNAME that is NAME (`rc:NAME:KEY`) is held to NAME's limit: the master revisions' games
 * register with ids such as `OS.get_unique_id()`, up to 38 characters.
 */
export function legacyNameProblem(name: string, nickname: string): string | undefined {
  if (name.includes(',') || nickname.includes(',')) return CLOSE_REASONS.commaInName;
  if (utf8Length(name) > MAX_LEGACY_NAME_BYTES) return CLOSE_REASONS.nameTooLong;
  if (nickname !== name && utf8Length(nickname) > MAX_LEGACY_NICKNAME_BYTES) {
    return CLOSE_REASONS.nameTooLong;
  }
  return undefined;
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // A surrogate pair is 4 bytes for 2 units: 2 each.
    bytes += code < 0x80 ? 1 : code < 0x800 || (code >= 0xd800 && code < 0xe000) ? 2 : 3;
  }
  return bytes;
}

type MessageType = 'rs' | 'rc' | 'ep' | 'cc' | 'cs' | 'goodbye';

/**
 * How many `:` each message needs: the original indexed `split(":")` up to here and dropped
 * the datagram (an IndexError) with fewer. `rc` needs KEY, not NICKNAME (master revisions);
 * `cs:KEY` without REASON is ours (members are told `Session closed.`).
 */
const FIELDS_NEEDED: { readonly [T in MessageType]: number } = {
  rs: 2,
  rc: 2,
  ep: 1,
  cc: 1,
  cs: 1,
  goodbye: 0,
};
const GOODBYE_BYTES = utf8Encoder.encode('goodbye');

/** The type in bytes `[0, end)`, compared as bytes: nothing is decoded for unknown types. */
function messageType(data: Uint8Array, end: number): MessageType | undefined {
  if (end === 2) {
    const a = data[0];
    const b = data[1];
    if (a === 0x72 /* r */) {
      if (b === 0x73 /* s */) return 'rs';
      if (b === 0x63 /* c */) return 'rc';
    } else if (a === 0x63 /* c */) {
      if (b === 0x63) return 'cc';
      if (b === 0x73) return 'cs';
    } else if (a === 0x65 /* e */ && b === 0x70 /* p */) {
      return 'ep';
    }
    return undefined;
  }
  if (end === GOODBYE_BYTES.length) {
    for (let i = 0; i < end; i++) if (data[i] !== GOODBYE_BYTES[i]) return undefined;
    return 'goodbye';
  }
  return undefined;
}

/** Bytes `[start, end)` as text, or undefined when they are not valid UTF-8. */
function field(data: Uint8Array, start: number, end: number): string | undefined {
  if (start >= end) return '';
  try {
    return utf8Decoder.decode(data.subarray(start, end));
  } catch {
    return undefined;
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
  return encodeLegacyText(`ok:${port}`);
}

/** `lobby:NICK1,NICK2,...:MAX`. Nicknames never contain `,` or `:` (the decoder refuses them). */
export function encodeLobby(nicknames: readonly string[], maxPlayers: number): Uint8Array {
  return encodeLegacyText(`lobby:${nicknames.join(',')}:${maxPlayers}`);
}

/** `peers:NAME:IP:PORT:HOSTING,...` with HOSTING `True`/`False` (later revision's 4th field). */
export function encodePeers(peers: readonly LegacyPeerEntry[]): Uint8Array {
  let text = 'peers:';
  for (let i = 0; i < peers.length; i++) {
    const peer = peers[i] as LegacyPeerEntry;
    if (i > 0) text += ',';
    text += `${peer.name}:${peer.address}:${peer.port}:${peer.hosting ? 'True' : 'False'}`;
  }
  return encodeLegacyText(text);
}

/** `close:REASON`. */
export function encodeClose(reason: string): Uint8Array {
  return encodeLegacyText(`close:${reason}`);
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
