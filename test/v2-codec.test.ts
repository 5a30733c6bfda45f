import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { V2_MAGIC } from '../src/protocol/magic.js';
import {
  decodeV2,
  encodePunch,
  encodePush,
  encodeV2,
  MAX_DATAGRAM_BYTES,
  type V2Message,
  type V2PushBody,
  verifyPunchTag,
  verifyPushTag,
} from '../src/protocol/v2.js';

const token = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const key = Uint8Array.from({ length: 16 }, (_, i) => 200 - i);
const ep = { address: '198.51.100.7', port: 40000 };
const ep6 = { address: '2001:db8::1', port: 65535 };

type Plain = Exclude<V2Message, { type: 'punch' | 'punch_ack' }>;

/** A push as a client decodes it: tagged with `token`. */
function pushed(body: V2PushBody): Plain {
  const d = decodeV2(encodePush(token, body));
  if (!d.ok) throw new Error(`no push: ${d.error}`);
  return d.msg as Plain;
}

const samples: Plain[] = [
  {
    type: 'host',
    requestId: 1,
    session: 'lobby: one, two',
    maxPlayers: 4,
    name: 'alice',
    nickname: 'Al:ice, 🦄',
    candidates: [ep, ep6],
  },
  { type: 'join', requestId: 0xffffffff, session: 's', name: 'b', nickname: '', candidates: [] },
  { type: 'start', requestId: 2, session: 's', token },
  { type: 'leave', requestId: 3, session: 's', token },
  { type: 'close', requestId: 4, session: 's', token, reason: 'bye: now' },
  { type: 'keepalive', requestId: 5, session: 's', token, lobbyVersion: 9 },
  { type: 'peers_ack', requestId: 6, session: 's', token },
  { type: 'registered', requestId: 7, token, observed: ep },
  { type: 'ok', requestId: 8 },
  { type: 'error', requestId: 9, code: 'session_full', message: 'Session full.' },
  pushed({ type: 'lobby', requestId: 0, version: 3, maxPlayers: 5, nicknames: ['a', 'é,:', '🎮'] }),
  {
    type: 'peers',
    requestId: 0,
    punchKey: key,
    token,
    observed: ep6,
    total: 3,
    first: 1,
    peers: [
      { name: 'x', nickname: 'X', isHost: true, publicEndpoint: ep, candidates: [ep6] },
      { name: 'y', nickname: '', isHost: false, publicEndpoint: ep6, candidates: [] },
    ],
  },
  pushed({ type: 'closed', requestId: 0, code: 'session_closed', reason: 'Session expired.' }),
  pushed({ type: 'closed', requestId: 0, code: 'host_left', reason: 'The host left.' }),
  pushed({ type: 'peer_left', requestId: 0, name: 'b🦄', why: 'left' }),
  pushed({ type: 'peer_left', requestId: 0, name: 'c', why: 'silent' }),
  { type: 'relay_allocate', requestId: 9, session: 's:1', token, peer: 'p🦄' },
  {
    type: 'relay_granted',
    requestId: 9,
    peer: 'p🦄',
    port: 40123,
    id: new Uint8Array(8).fill(3),
    bindToken: new Uint8Array(16).fill(4),
  },
  {
    type: 'relay_bind',
    requestId: 10,
    id: new Uint8Array(8).fill(3),
    proof: new Uint8Array(16).fill(4),
  },
  { type: 'relay_bound', requestId: 10, id: new Uint8Array(8).fill(3) },
];

describe('v2 codec', () => {
  it('round-trips every message type field by field, including : , and emoji in text', () => {
    for (const msg of samples) {
      const bytes = encodeV2(msg);
      assert.ok(bytes.length <= MAX_DATAGRAM_BYTES);
      assert.deepEqual([...bytes.subarray(0, 4)], [...V2_MAGIC]);
      const decoded = decodeV2(bytes);
      assert.equal(decoded.ok, true, `${msg.type}: ${decoded.ok ? '' : decoded.error}`);
      if (decoded.ok) assert.deepEqual(decoded.msg, msg);
    }
  });

  it('a punch carries a tag that only the session key verifies', () => {
    const bytes = encodePunch(key, {
      type: 'punch',
      requestId: 12,
      from: 'a',
      to: 'b',
      candidate: 3,
      sentAt: 123456,
    });
    const decoded = decodeV2(bytes);
    assert.ok(decoded.ok && decoded.msg.type === 'punch');
    if (!decoded.ok || decoded.msg.type !== 'punch') return;
    assert.equal(decoded.msg.candidate, 3);
    assert.equal(decoded.msg.sentAt, 123456);
    assert.ok(verifyPunchTag(key, decoded.msg.signed, decoded.msg.tag));
    assert.ok(!verifyPunchTag(token, decoded.msg.signed, decoded.msg.tag));
    const forged = Uint8Array.from(bytes);
    forged[12] = (forged[12] ?? 0) ^ 1; // flip a bit in the sender's name
    const d2 = decodeV2(forged);
    assert.ok(d2.ok && d2.msg.type === 'punch');
    if (d2.ok && d2.msg.type === 'punch')
      assert.ok(!verifyPunchTag(key, d2.msg.signed, d2.msg.tag));
  });

  it('rejects ill-formed UTF-8, trailing bytes, reserved types and other versions with a code', () => {
    const good = encodeV2({ type: 'leave', requestId: 77, session: 'ab', token });
    const badUtf8 = Uint8Array.from(good);
    badUtf8[10] = 0xc3; // a lead byte followed by 'b': not UTF-8
    const r1 = decodeV2(badUtf8);
    assert.equal(r1.ok, false);
    if (!r1.ok) {
      assert.equal(r1.code, 'bad_request');
      assert.equal(r1.requestId, 77);
    }
    const r2 = decodeV2(Uint8Array.of(...good, 0));
    assert.ok(!r2.ok && r2.code === 'bad_request');
    const relay = Uint8Array.of(0x89, 0x48, 0x50, 0x02, 0x60, 0, 0, 0, 5);
    const r3 = decodeV2(relay);
    assert.ok(!r3.ok && r3.code === 'bad_request' && r3.requestId === 5);
    // The wrapped relay's types are retired: a datagram of theirs is refused, never relayed.
    for (const retired of [0x61, 0x62, 0x63]) {
      const r = decodeV2(Uint8Array.of(0x89, 0x48, 0x50, 0x02, retired, 0, 0, 0, 5, 1, 2, 3));
      assert.ok(!r.ok && r.code === 'bad_request' && /reserved/.test(r.error), `0x${retired}`);
    }
    const v3 = Uint8Array.from(good);
    v3[3] = 3;
    const r4 = decodeV2(v3);
    assert.ok(!r4.ok && r4.code === 'unsupported_version');
    // peer_left with a reason byte other than 1 (left) or 2 (silent).
    const gone = encodePush(token, { type: 'peer_left', requestId: 0, name: 'b', why: 'left' });
    const badWhy = Uint8Array.from(gone);
    badWhy[badWhy.length - 17] = 3;
    const r6 = decodeV2(badWhy);
    assert.ok(!r6.ok && r6.code === 'bad_request');
    const r5 = decodeV2(new TextEncoder().encode('rs:KEY:4'));
    assert.ok(!r5.ok && r5.code === undefined);
  });

  it('a host or join of a newer revision decodes as the fields this codec knows', () => {
    const host = encodeV2({
      type: 'host',
      requestId: 3,
      session: 's',
      maxPlayers: 4,
      name: 'h',
      nickname: '',
      candidates: [],
      revision: 2,
      keepOpenS: 60,
      silenceS: 9,
    });
    const newer = decodeV2(Uint8Array.of(...host, 7, 7, 7));
    assert.ok(newer.ok && newer.msg.type === 'host', 'a revision-2 host with extra fields');
    assert.equal(newer.msg.revision, 2);
    assert.equal(newer.msg.keepOpenS, 60);
    assert.equal(newer.msg.silenceS, 9);
    const join = encodeV2({
      type: 'join',
      requestId: 4,
      session: 's',
      name: 'j',
      nickname: '',
      candidates: [],
      revision: 1,
    });
    // Revision 1 has no fields after `rev`: a byte there is not padding and not known.
    const r = decodeV2(Uint8Array.of(...join, 7));
    assert.ok(!r.ok && r.error === 'trailing bytes');
  });

  it('a push (lobby, closed, peer_left) ends in a tag that only the member token verifies', () => {
    for (const body of [
      { type: 'lobby', requestId: 4, version: 2, maxPlayers: 2, nicknames: ['a'] },
      { type: 'closed', requestId: 0, code: 'host_left', reason: 'The host left.' },
      { type: 'peer_left', requestId: 0, name: 'b', why: 'silent' },
    ] as const) {
      const bytes = encodePush(token, body);
      const d = decodeV2(bytes);
      assert.ok(d.ok && d.msg.type === body.type, body.type);
      if (
        !d.ok ||
        (d.msg.type !== 'lobby' && d.msg.type !== 'closed' && d.msg.type !== 'peer_left')
      )
        return;
      assert.equal(d.msg.tag.length, 16);
      assert.deepEqual(d.msg.signed, bytes.subarray(0, bytes.length - 16));
      assert.equal(verifyPushTag(token, d.msg), true);
      assert.equal(verifyPushTag(key, d.msg), false, 'another key');
      // Without its tag (the format before) it does not decode.
      assert.equal(decodeV2(bytes.subarray(0, bytes.length - 16)).ok, false);
    }
  });

  it('refuses to encode fields beyond their limits instead of sending a broken datagram', () => {
    assert.throws(
      () =>
        encodeV2({
          type: 'join',
          requestId: 1,
          session: 's',
          name: 'n'.repeat(33),
          nickname: '',
          candidates: [],
        }),
      RangeError,
    );
  });

  it('never throws on arbitrary bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), (bytes) => {
        const r = decodeV2(bytes);
        assert.equal(typeof r.ok, 'boolean');
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on mutated valid datagrams, and whatever decodes re-encodes (fuzz)', () => {
    const valid = samples.map((m) => encodeV2(m));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: valid.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat({ max: 40 }),
        (which, edits, cut) => {
          const bytes = Uint8Array.from(valid[which] as Uint8Array);
          for (const [pos, val] of edits) bytes[pos % bytes.length] = val;
          const r = decodeV2(bytes.subarray(0, Math.max(0, bytes.length - cut)));
          if (r.ok && r.msg.type !== 'punch' && r.msg.type !== 'punch_ack') {
            assert.deepEqual(decodeV2(encodeV2(r.msg as Plain)), r);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
