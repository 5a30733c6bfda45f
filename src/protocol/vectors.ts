/**
 * Golden test vectors of the v2 codec (docs/protocol-v2.md §1–2), made by the TypeScript codec
 * itself: every message type as bytes (hex) with its decoded fields, and malformed datagrams
 * with the error `decodeV2` gives. Other implementations (the Godot 4 addon's GDScript codec)
 * are checked against the committed file, `godot/tests/v2_vectors.json`; a test checks that the
 * file equals what this module produces now, so a codec change cannot drift silently.
 *
 *   node dist/src/protocol/vectors.js --write   # regenerate the committed file
 *
 * Encoding of fields in JSON: byte fields (token, key, channel, tag, payload) as lower-case
 * hex, endpoints as `{ address, port }`, everything else as itself. Tagged messages (punches,
 * the pushes lobby/closed/peer_left and signed relay_binds) also carry `key` (the punch key,
 * the member token a push is tagged with, or the bindToken a bind is signed with) and
 * `tag_valid`.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '../errors.js';
import { V2_MAGIC } from './magic.js';
import {
  bytesKey,
  decodeV2,
  encodePunch,
  encodePush,
  encodeRelayBind,
  encodeV2,
  MAX_DATAGRAM_BYTES,
  type PunchFields,
  V2_TYPES,
  type V2Message,
  type V2PushBody,
} from './v2.js';

/** Where the committed vectors live, relative to the repository root. */
export const V2_VECTORS_PATH = 'godot/tests/v2_vectors.json';

export interface V2Vector {
  readonly name: string;
  readonly hex: string;
  /** The decoded message; for punch/punch_ack and pushes also `key` (hex) and `tag_valid`. */
  readonly fields: Record<string, unknown>;
}

export interface V2MalformedVector {
  readonly name: string;
  readonly hex: string;
  readonly error: string;
  /** Absent when the header is unreadable (no answer is possible). */
  readonly code?: string;
  readonly request_id?: number;
}

export interface V2Vectors {
  readonly comment: string;
  readonly max_datagram_bytes: number;
  readonly error_codes: readonly string[];
  readonly types: Record<string, number>;
  readonly messages: readonly V2Vector[];
  readonly malformed: readonly V2MalformedVector[];
}

const hex = (b: Uint8Array): string => bytesKey(b);
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
/** 16 recognisable bytes: `first`, `first+1`, ... */
const seq = (first: number, n = 16): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => first + i);

/** A decoded message as JSON: byte arrays as hex, the punch's `signed` left out (derivable). */
function fieldsOf(msg: V2Message): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(msg)) {
    if (k === 'signed') continue;
    if (v instanceof Uint8Array) out[k] = hex(v);
    else if (k === 'peers' && Array.isArray(v))
      out[k] = v.map((p: Record<string, unknown>) => ({ ...p }));
    else out[k] = v;
  }
  return out;
}

type Plain = Exclude<V2Message, { type: 'punch' | 'punch_ack' }>;

const TOKEN = seq(0x10);
const KEY = seq(0xa0);
const RELAY_ID = seq(0xc0, 8);
const BIND_TOKEN = seq(0xd0, 16);
const CANDIDATES = [
  { address: '192.168.1.20', port: 50000 },
  { address: 'fd00::1:2', port: 50000 },
];

/** Every message type, with awkward but valid values (UTF-8 names, IPv6, limits). */
const ALL_PLAIN: readonly [string, Record<string, unknown>][] = [
  [
    'host',
    {
      type: 'host',
      requestId: 1,
      session: 'lobby-1',
      maxPlayers: 4,
      name: 'alice',
      nickname: 'Alice: the 🦄, x',
      candidates: CANDIDATES,
      nat: 'eim',
    },
  ],
  [
    'host with no candidates and empty nickname',
    {
      type: 'host',
      requestId: 0xfffffffe,
      session: 's',
      maxPlayers: 32,
      name: 'h',
      nickname: '',
      candidates: [],
    },
  ],
  [
    'join',
    {
      type: 'join',
      requestId: 0x01020304,
      session: 'lobby-1',
      name: 'bob',
      nickname: 'Bøb',
      candidates: [{ address: '10.0.0.7', port: 1 }],
      nat: 'edm-random',
    },
  ],
  [
    'host revision 1 (open 600 s, silence 9 s)',
    {
      type: 'host',
      requestId: 3,
      session: 'open',
      maxPlayers: 8,
      name: 'h',
      nickname: 'H',
      candidates: [],
      nat: 'edm-sequential',
      revision: 1,
      keepOpenS: 600,
      silenceS: 9,
    },
  ],
  [
    'join revision 1',
    {
      type: 'join',
      requestId: 4,
      session: 'open',
      name: 'late',
      nickname: '',
      candidates: [],
      revision: 1,
    },
  ],
  ['start', { type: 'start', requestId: 7, session: 'lobby-1', token: TOKEN }],
  ['leave', { type: 'leave', requestId: 8, session: 'lobby-1', token: TOKEN }],
  [
    'close',
    { type: 'close', requestId: 9, session: 'lobby-1', token: TOKEN, reason: 'Host left.' },
  ],
  [
    'keepalive',
    {
      type: 'keepalive',
      requestId: 10,
      session: 'lobby-1',
      token: TOKEN,
      lobbyVersion: 0x8000_0001,
    },
  ],
  ['peers_ack', { type: 'peers_ack', requestId: 11, session: 'lobby-1', token: TOKEN }],
  [
    'peers_ack revision 1',
    { type: 'peers_ack', requestId: 12, session: 'lobby-1', token: TOKEN, version: 0x01020304 },
  ],
  [
    'registered',
    {
      type: 'registered',
      requestId: 1,
      token: TOKEN,
      observed: { address: '203.0.113.5', port: 61000 },
    },
  ],
  [
    'registered revision 1',
    {
      type: 'registered',
      requestId: 3,
      token: TOKEN,
      observed: { address: '203.0.113.5', port: 61000 },
      keepaliveMs: 5000,
    },
  ],
  [
    'registered ipv6',
    {
      type: 'registered',
      requestId: 2,
      token: TOKEN,
      observed: { address: '2001:db8::5', port: 65535 },
    },
  ],
  ['ok', { type: 'ok', requestId: 7 }],
  [
    'error',
    { type: 'error', requestId: 1, code: 'session_exists', message: 'session "lobby-1" exists' },
  ],
  [
    'lobby',
    { type: 'lobby', requestId: 0, version: 3, maxPlayers: 4, nicknames: ['Alice', 'Bøb', ''] },
  ],
  ['lobby empty', { type: 'lobby', requestId: 5, version: 1, maxPlayers: 2, nicknames: [] }],
  [
    'peers',
    {
      type: 'peers',
      requestId: 0,
      punchKey: KEY,
      token: TOKEN,
      observed: { address: '203.0.113.5', port: 61000 },
      total: 3,
      first: 0,
      peers: [
        {
          name: 'alice',
          nickname: 'Alice',
          isHost: true,
          publicEndpoint: { address: '198.51.100.9', port: 4242 },
          candidates: CANDIDATES,
          nat: 'eim',
        },
        {
          name: 'carol',
          nickname: '',
          isHost: false,
          publicEndpoint: { address: '2001:db8::9', port: 5000 },
          candidates: [],
        },
      ],
    },
  ],
  [
    'peers second part',
    {
      type: 'peers',
      requestId: 0,
      punchKey: KEY,
      token: TOKEN,
      observed: { address: '203.0.113.5', port: 61000 },
      total: 3,
      first: 2,
      peers: [
        {
          name: 'dave',
          nickname: 'D',
          isHost: false,
          publicEndpoint: { address: '198.51.100.10', port: 1 },
          candidates: [{ address: '10.1.1.1', port: 2 }],
          nat: 'edm-sequential',
        },
      ],
    },
  ],
  [
    'peers revision 1 (version 7, open 42 s)',
    {
      type: 'peers',
      requestId: 0,
      punchKey: KEY,
      token: TOKEN,
      observed: { address: '203.0.113.5', port: 61000 },
      total: 1,
      first: 0,
      peers: [
        {
          name: 'late',
          nickname: '',
          isHost: false,
          publicEndpoint: { address: '198.51.100.11', port: 7000 },
          candidates: [],
        },
      ],
      version: 7,
      openS: 42,
    },
  ],
  ['closed', { type: 'closed', requestId: 0, code: 'host_left', reason: 'The host left.' }],
  [
    'closed server_shutdown (revision 1)',
    {
      type: 'closed',
      requestId: 0,
      code: 'server_shutdown',
      reason: 'The server is shutting down.',
    },
  ],
  ['peer_left left', { type: 'peer_left', requestId: 0, name: 'bob', why: 'left' }],
  ['peer_left silent', { type: 'peer_left', requestId: 0, name: 'bob', why: 'silent' }],
  [
    'relay_allocate',
    { type: 'relay_allocate', requestId: 12, session: 'lobby-1', token: TOKEN, peer: 'bob' },
  ],
  [
    'relay_granted',
    {
      type: 'relay_granted',
      requestId: 12,
      peer: 'bob',
      port: 40001,
      id: RELAY_ID,
      bindToken: BIND_TOKEN,
    },
  ],
  ['relay_bind', { type: 'relay_bind', requestId: 13, id: RELAY_ID, proof: BIND_TOKEN }],
  ['relay_bound', { type: 'relay_bound', requestId: 13, id: RELAY_ID }],
  ['probe', { type: 'probe', requestId: 21, changeAddress: false, changePort: false }],
  ['probe change both', { type: 'probe', requestId: 22, changeAddress: true, changePort: true }],
  [
    'probe_reply',
    {
      type: 'probe_reply',
      requestId: 22,
      observed: { address: '198.51.100.10', port: 40000 },
      altAddress: '203.0.113.11',
      altPort: 4001,
    },
  ],
  [
    'probe_reply without alternates',
    {
      type: 'probe_reply',
      requestId: 21,
      observed: { address: '2001:db8::1', port: 7 },
      altAddress: '',
      altPort: 0,
    },
  ],
];

/**
 * The vectors of the types the codec has now (typed loosely, so that a codec change that drops or
 * renames a type changes the generated file, which the committed-file test then reports, instead
 * of breaking the build).
 */
const PLAIN: readonly [string, Plain][] = ALL_PLAIN.filter(([, m]) =>
  Object.hasOwn(V2_TYPES, String(m.type)),
).map(([name, m]) => [name, m as unknown as Plain]);

function isPush(msg: Plain): boolean {
  return msg.type === 'lobby' || msg.type === 'closed' || msg.type === 'peer_left';
}

const PUNCHES: readonly [string, PunchFields][] = [
  [
    'punch',
    { type: 'punch', requestId: 1, from: 'alice', to: 'bob', candidate: 0, sentAt: 123456 },
  ],
  [
    'punch_ack',
    {
      type: 'punch_ack',
      requestId: 99,
      from: 'bøb',
      to: 'alice',
      candidate: 17,
      sentAt: 0xffffffff,
    },
  ],
];

/** Bytes as hex with a 9-byte v2 header of `type` and request id 0x00000005. */
const withHeader = (type: number, body: string): string =>
  `${hex(V2_MAGIC)}${type.toString(16).padStart(2, '0')}00000005${body}`;

/** Malformed datagrams: each breaks one rule of the spec. */
function malformedInputs(): [string, string][] {
  const byName = (n: string) => PLAIN.find(([name]) => name === n)?.[1] as Plain;
  const host = hex(encodeV2(byName('host')));
  const registered = hex(encodeV2(byName('registered')));
  const punch = encodePunch(KEY, PUNCHES[0]?.[1] as PunchFields);
  const ep = (addr: string, port: number) =>
    `${addr.length.toString(16).padStart(2, '0')}${hex(new TextEncoder().encode(addr))}${port.toString(16).padStart(4, '0')}`;
  return [
    ['empty', ''],
    ['shorter than a header', '8948500201000000'],
    ['no magic', '474850020100000001'],
    ['legacy text', hex(new TextEncoder().encode('rs:lobby:2'))],
    ['version 3', `8948500301000000050000`],
    ['unknown type 0x08', withHeader(0x08, '')],
    ['retired relay_allocated', withHeader(0x61, '03626f62c0c1c2c3c4c5c6c7')],
    ['retired relay_data', withHeader(0x62, 'c0c1c2c3c4c5c6c7010203')],
    ['reserved relay_close', withHeader(0x63, '')],
    ['server type 0x27', withHeader(0x27, '')],
    ['trailing byte', `${registered}00`],
    ['truncated registered', registered.slice(0, registered.length - 2)],
    ['truncated host', host.slice(0, 30)],
    ['session longer than 64', withHeader(0x01, `41${'61'.repeat(65)}`)],
    ['ill-formed UTF-8 (lone continuation)', withHeader(0x03, `0180${hex(TOKEN)}`)],
    ['ill-formed UTF-8 (overlong)', withHeader(0x03, `02c0af${hex(TOKEN)}`)],
    ['ill-formed UTF-8 (surrogate)', withHeader(0x03, `03eda080${hex(TOKEN)}`)],
    ['address not an IP', withHeader(0x20, `${hex(TOKEN)}${ep('example.com', 80)}`)],
    ['address too short', withHeader(0x20, `${hex(TOKEN)}${ep('1', 80)}`)],
    ['port 0', withHeader(0x20, `${hex(TOKEN)}${ep('1.2.3.4', 0)}`)],
    ['five candidates', withHeader(0x02, `017301620162${'05'}${ep('1.2.3.4', 1).repeat(5)}`)],
    ['unknown error code', withHeader(0x22, `046e6f7065${'00'}`)],
    ['closed with unknown code', withHeader(0x25, `03626164${'00'}`)],
    ['peer_left why 3', withHeader(0x26, '03626f6203')],
    [
      'peers slice beyond total',
      withHeader(0x24, `${hex(KEY)}${hex(TOKEN)}${ep('1.2.3.4', 5)}010101`),
    ],
    [
      'peers isHost 2',
      withHeader(0x24, `${hex(KEY)}${hex(TOKEN)}${ep('1.2.3.4', 5)}010001016101620200`),
    ],
    [
      'peers nat 4',
      withHeader(
        0x24,
        `${hex(KEY)}${hex(TOKEN)}${ep('1.2.3.4', 5)}010001016101620${'0'}${ep('1.2.3.4', 6)}0004`,
      ),
    ],
    ['join nat 4', withHeader(0x02, '0173016201620004')],
    ['lobby count beyond data', withHeader(0x23, '0000000102020141')],
    ['closed without tag', withHeader(0x25, '09686f73745f6c65667400')],
    ['lobby with a short tag', withHeader(0x23, `000000010200${hex(TOKEN).slice(2)}`)],
    ['punch without tag', hex(punch.subarray(0, punch.length - 16))],
    ['relay_granted port 0', withHeader(0x64, `03626f620000${hex(RELAY_ID)}${hex(BIND_TOKEN)}`)],
    ['relay_bind short secret', withHeader(0x65, `${hex(RELAY_ID)}d0d1d2`)],
    ['probe not padded to 64 bytes', withHeader(0x70, '00')],
    ['probe with unknown flags', withHeader(0x70, `04${'00'.repeat(54)}`)],
    [
      'probe_reply with a one-character alternate address',
      withHeader(0x71, '0d3139382e35312e3130302e31309c4001310fa1'),
    ],
    ['too large', withHeader(0x24, '00'.repeat(MAX_DATAGRAM_BYTES))],
  ];
}

export function v2Vectors(): V2Vectors {
  const messages: V2Vector[] = [];
  for (const [name, msg] of PLAIN) {
    // A push (lobby, closed, peer_left) is tagged with the receiving member's token: `key`.
    const push = isPush(msg);
    const data = push ? encodePush(TOKEN, msg as V2PushBody) : encodeV2(msg);
    const decoded = decodeV2(data);
    if (!decoded.ok) throw new Error(`vector ${name} does not decode: ${decoded.error}`);
    const fields = fieldsOf(decoded.msg);
    messages.push({
      name,
      hex: hex(data),
      fields: push ? { ...fields, key: hex(TOKEN), tag_valid: true } : fields,
    });
  }
  // A push tagged with another member's token: decodes, but the tag does not verify.
  const forgedPush = encodePush(seq(0x00), {
    type: 'closed',
    requestId: 0,
    code: 'session_closed',
    reason: 'Forged.',
  });
  const forgedPushDecoded = decodeV2(forgedPush);
  if (!forgedPushDecoded.ok) throw new Error('forged push does not decode');
  messages.push({
    name: 'closed with a wrong tag',
    hex: hex(forgedPush),
    fields: { ...fieldsOf(forgedPushDecoded.msg), key: hex(TOKEN), tag_valid: false },
  });
  for (const [name, fields] of PUNCHES) {
    const data = encodePunch(KEY, fields);
    const decoded = decodeV2(data);
    if (!decoded.ok) throw new Error(`vector ${name} does not decode: ${decoded.error}`);
    messages.push({
      name,
      hex: hex(data),
      fields: { ...fieldsOf(decoded.msg), key: hex(KEY), tag_valid: true },
    });
  }
  // A revision-1 relay_bind, signed with the bindToken (`key`) over its counter, and one
  // signed with another token.
  for (const [name, token, valid] of [
    ['relay_bind signed', BIND_TOKEN, true],
    ['relay_bind signed with a wrong token', seq(0x00), false],
  ] as const) {
    const data = encodeRelayBind(token, 0x01020304, RELAY_ID);
    const decoded = decodeV2(data);
    if (!decoded.ok) throw new Error(`vector ${name} does not decode: ${decoded.error}`);
    messages.push({
      name,
      hex: hex(data),
      fields: { ...fieldsOf(decoded.msg), key: hex(BIND_TOKEN), tag_valid: valid },
    });
  }
  // A punch whose tag was made with another key: decodes, but the tag does not verify.
  const forged = encodePunch(seq(0x00), PUNCHES[0]?.[1] as PunchFields);
  const forgedDecoded = decodeV2(forged);
  if (!forgedDecoded.ok) throw new Error('forged punch does not decode');
  messages.push({
    name: 'punch with a wrong tag',
    hex: hex(forged),
    fields: { ...fieldsOf(forgedDecoded.msg), key: hex(KEY), tag_valid: false },
  });
  const malformed: V2MalformedVector[] = malformedInputs().map(([name, h]) => {
    const r = decodeV2(bytes(h));
    if (r.ok) throw new Error(`malformed vector ${name} decodes`);
    return {
      name,
      hex: h,
      error: r.error,
      ...(r.code === undefined ? {} : { code: r.code }),
      ...(r.requestId === undefined ? {} : { request_id: r.requestId }),
    };
  });
  return {
    comment:
      'Generated by src/protocol/vectors.ts from the TypeScript v2 codec; do not edit. Regenerate: npx tsc -p . && node dist/src/protocol/vectors.js --write',
    max_datagram_bytes: MAX_DATAGRAM_BYTES,
    error_codes: [...ERROR_CODES],
    types: Object.fromEntries(Object.entries(V2_TYPES).filter(([k]) => k !== 'relay_close')),
    messages,
    malformed,
  };
}

/** The committed file's text: what `--write` writes. */
export function v2VectorsText(): string {
  return `${JSON.stringify(v2Vectors(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  const target = fileURLToPath(new URL(`../../../${V2_VECTORS_PATH}`, import.meta.url));
  writeFileSync(target, v2VectorsText());
  process.stdout.write(`wrote ${target}\n`);
}
