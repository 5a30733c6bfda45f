import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { decodeLegacy } from '../src/protocol/legacy.js';
import { V2_MAGIC } from '../src/protocol/magic.js';
import { RendezvousServer } from '../src/server/rendezvous.js';

const ENDPOINTS: readonly Endpoint[] = [
  { address: '198.51.100.1', port: 4000 },
  { address: '198.51.100.1', port: 4001 },
  { address: '203.0.113.2', port: 51000 },
  { address: '::ffff:203.0.113.3', port: 52000 },
  { address: '203.0.113.4', port: 4000 },
  { address: '2001:db8::7', port: 4000 },
];
const KEYS = ['A', 'B', 'C'];
const NAMES = ['h', 'b', 'c', 'd'];

const endpointArb = fc.constantFrom(...ENDPOINTS);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Well-formed messages over a small pool of keys and names, so they collide often. */
const validArb: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc
      .tuple(fc.constantFrom(...KEYS), fc.integer({ min: 1, max: 4 }))
      .map(([k, n]) => `rs:${k}:${n}`),
    fc
      .tuple(fc.constantFrom(...NAMES), fc.constantFrom(...KEYS), fc.constantFrom('N1', 'N2', ''))
      .map(([n, k, nick]) => `rc:${n}:${k}:${nick}`),
    fc.constantFrom(...KEYS).map((k) => `ep:${k}`),
    fc.constantFrom(...NAMES).map((n) => `cc:${n}`),
    fc.constantFrom(...KEYS).map((k) => `cs:${k}:bye`),
    fc.constant('goodbye'),
  )
  .map(text);

const fieldArb = fc.oneof(
  fc.constantFrom('A', 'B', 'h', 'b', '2', '0', '-1', '65', '', 'a,b', ' 3'),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
);

/** Message-shaped junk: real and fake types with random fields. */
const junkArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.constantFrom('rs', 'rc', 'ep', 'cc', 'cs', 'goodbye', 'RS', 'r', 'xx', ''),
    fc.array(fieldArb, { maxLength: 5 }),
    fc.constantFrom('', '\n', '\0', ':'),
  )
  .map(([type, fields, tail]) => text([type, ...fields].join(':') + tail));

const bytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ minLength: 1020, maxLength: 1100 }),
  fc.uint8Array({ maxLength: 40 }).map((tail) => Uint8Array.from([...V2_MAGIC, ...tail])),
);

const datagramArb = fc.record({
  from: endpointArb,
  data: fc.oneof({ weight: 3, arbitrary: validArb }, junkArb, bytesArb),
});

function snapshots(server: RendezvousServer): Map<string, string> {
  return new Map(server.legacy.describeSessions().map((s) => [s.key, JSON.stringify(s)]));
}

/** The sessions a datagram may legitimately change: the KEY it names and the sender's own. */
function addressedKeys(server: RendezvousServer, from: Endpoint, data: Uint8Array): Set<string> {
  const keys = new Set<string>();
  const decoded = decodeLegacy(data);
  if (!decoded.ok) return keys;
  const msg = decoded.msg;
  if ('key' in msg) keys.add(msg.key);
  if (msg.type === 'register_client' || msg.type === 'check_out') {
    for (const session of server.legacy.describeSessions()) {
      if (session.members.some((m) => m.address === from.address && m.port === from.port)) {
        keys.add(session.key);
      }
    }
  }
  return keys;
}

function newServer(autostart: boolean): RendezvousServer {
  let seed = 1;
  // Its replies are never polled: the property is about the tables, not what they send.
  return new RendezvousServer({
    autostart,
    maxSessions: 2,
    // Deterministic bytes for v2 tokens: the run must be reproducible from its seed.
    randomBytes: (n) => Uint8Array.from({ length: n }, () => seed++ & 0xff),
  });
}

describe('legacy server under random input (fast-check)', () => {
  test('random datagrams, interleaved with valid ones, never throw and never change a session they do not address', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(datagramArb, { minLength: 1, maxLength: 80 }),
        (autostart, datagrams) => {
          const server = newServer(autostart);
          let now = 0;
          for (const { from, data } of datagrams) {
            const before = snapshots(server);
            const addressed = addressedKeys(server, from, data);
            server.handle(now, from, data);
            now += 1;
            const after = snapshots(server);
            for (const key of new Set([...before.keys(), ...after.keys()])) {
              if (addressed.has(key)) continue;
              assert.equal(after.get(key), before.get(key), `session ${key} changed`);
            }
          }
          assert.equal(server.counters.rejections.internal_error, undefined);
          assert.equal(server.counters.datagramsIn, datagrams.length);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('the valid-message generator reaches every session outcome (the property is not vacuous)', () => {
    const server = newServer(true);
    const outcomes = { created: 0, started: 0, closed: 0 };
    fc.assert(
      fc.property(
        fc.array(fc.record({ from: endpointArb, data: validArb }), { maxLength: 60 }),
        (list) => {
          for (const { from, data } of list) server.handle(0, from, data);
          outcomes.created = server.counters.sessionsCreated;
          outcomes.started = server.counters.sessionsStarted;
          outcomes.closed = server.counters.sessionsClosed;
        },
      ),
      { numRuns: 100, seed: 42 },
    );
    assert.ok(outcomes.created > 10, `created ${outcomes.created}`);
    assert.ok(outcomes.started > 0, `started ${outcomes.started}`);
    assert.ok(outcomes.closed > 0, `closed ${outcomes.closed}`);
  });
});
