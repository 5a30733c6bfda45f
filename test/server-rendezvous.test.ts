import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { V2_MAGIC } from '../src/protocol/magic.js';
import { encodeV2 } from '../src/protocol/v2.js';
import type { SessionLifecycleEvent } from '../src/server/lifecycle.js';
import { RendezvousServer } from '../src/server/rendezvous.js';

const HOST: Endpoint = { address: '198.51.100.1', port: 4000 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function server(sessionTtlMs = 60_000, legacy = true) {
  const sent: string[] = [];
  const core = new RendezvousServer({
    outbox: { send: (_to, data) => sent.push(new TextDecoder().decode(data)) },
    sessionTtlMs,
    legacy,
    randomBytes: (n) => new Uint8Array(n),
  });
  return { core, sent };
}

describe('rendezvous core: dispatch and counters', () => {
  test('a datagram from source port 0 (forged: no one can receive there) is counted and forgotten', () => {
    const { core, sent } = server(1_000);
    core.handle(0, HOST, text('rs:k:2'));
    core.handle(0, { address: '203.0.113.9', port: 0 }, text('rc:z:k:Z'));
    core.handle(0, { address: '203.0.113.9', port: 0 }, Uint8Array.from(V2_MAGIC));
    assert.deepEqual(sent, ['ok:4000']);
    assert.equal(core.counters.rejections.source_port_zero, 2);
    assert.equal(core.legacy.describeSession('k')?.members.length, 0);
  });

  test("a fault in one protocol's timers never stops the other's", () => {
    const { core } = server(1_000);
    core.handle(0, HOST, text('rs:k:2'));
    core.legacy.handleTimeout = () => {
      throw new Error('boom');
    };
    let v2Ran = false;
    core.v2.handleTimeout = () => {
      v2Ran = true;
    };
    core.handleTimeout(2_000);
    assert.equal(v2Ran, true);
    assert.equal(core.counters.rejections.internal_error, 1);
  });

  test('every datagram in and every reply out is counted', () => {
    const { core, sent } = server();
    core.handle(0, HOST, text('rs:k:2'));
    core.handle(0, HOST, text('rc:h:k:Host'));
    core.handle(0, HOST, text('nonsense'));
    assert.deepEqual(sent, ['ok:4000', 'ok:4000', 'lobby:Host:2']);
    assert.equal(core.counters.datagramsIn, 3);
    assert.equal(core.counters.datagramsOut, 3);
    assert.equal(core.counters.sessionsCreated, 1);
    assert.deepEqual(core.counters.rejections, { unknown_type: 1 });
    assert.equal(core.sessionCount, 1);
  });

  test('without legacy, text datagrams get no answer and are counted; v2 is still served', () => {
    const { core, sent } = server(60_000, false);
    core.handle(0, HOST, text('rs:k:2'));
    core.handle(0, HOST, text('rc:h:k:Host'));
    assert.deepEqual(sent, []);
    assert.deepEqual(core.counters.rejections, { legacy_disabled: 2 });
    core.handle(
      0,
      HOST,
      encodeV2({
        type: 'host',
        requestId: 1,
        session: 'k',
        maxPlayers: 2,
        name: 'h',
        nickname: '',
        candidates: [],
      }),
    );
    assert.equal(sent.length, 1, 'v2 registered');
    assert.equal(core.sessionCount, 1);
    assert.equal(core.legacy.sessionCount, 0);
  });

  test('a datagram with the v2 prefix goes to the v2 table, never to the legacy parser', () => {
    const { core } = server();
    core.handle(0, HOST, Uint8Array.from([...V2_MAGIC, 0xff, 0x00, 0x3a]));
    core.handle(0, HOST, Uint8Array.of(0x89, 0x48, 0x50));
    const legacyKinds = ['empty', 'control_chars', 'not_utf8', 'unknown_type'];
    for (const kind of legacyKinds) assert.equal(core.counters.rejections[kind], undefined, kind);
    assert.equal(core.legacy.sessionCount, 0);
    assert.equal(core.counters.rejections.internal_error, undefined);
  });

  test('sessions of both protocols report their lifecycle to the one log hook', () => {
    const events: SessionLifecycleEvent[] = [];
    const core = new RendezvousServer({
      outbox: { send: () => {} },
      randomBytes: (n) => new Uint8Array(n),
      onLifecycle: (event) => events.push(event),
    });
    core.handle(0, HOST, text('rs:legacy-lobby:2'));
    const host = { requestId: 1, maxPlayers: 2, name: 'h', nickname: 'H', candidates: [] };
    core.handle(0, HOST, encodeV2({ type: 'host', session: 'v2-lobby', ...host }));
    assert.deepEqual(
      events.map((e) => [e.type, e.protocol]),
      [
        ['created', 'legacy'],
        ['created', 'v2'],
      ],
    );
  });

  test('text that merely starts with 0x89 but lacks the prefix is legacy input, refused as such', () => {
    const { core } = server();
    core.handle(0, HOST, Uint8Array.of(0x89, 0x48));
    assert.equal(core.counters.rejections.unknown_type, 1);
  });

  test('the next deadline is the legacy expiry, and handleTimeout expires through the core', () => {
    const { core, sent } = server(1_000);
    core.handle(10, HOST, text('rs:k:2'));
    core.handle(10, HOST, text('rc:h:k:Host'));
    assert.ok(core.nextDeadline() <= 1_010);
    core.handleTimeout(1_010);
    assert.equal(sent.at(-1), 'close:Session closed.');
    assert.equal(core.counters.sessionsExpired, 1);
  });

  test('shutdown tells members close:Server shutting down by default', () => {
    const { core, sent } = server();
    core.handle(0, HOST, text('rs:k:2'));
    core.handle(0, HOST, text('rc:h:k:Host'));
    core.shutdown(0);
    assert.equal(sent.at(-1), 'close:Server shutting down');
    assert.equal(core.sessionCount, 0);
  });

  test('a failing outbox costs one datagram, counted as internal_error, and the server goes on', () => {
    let fail = true;
    const sent: string[] = [];
    const core = new RendezvousServer({
      outbox: {
        send: (_to, data) => {
          if (fail) throw new Error('socket gone');
          sent.push(new TextDecoder().decode(data));
        },
      },
      randomBytes: (n) => new Uint8Array(n),
    });
    core.handle(0, HOST, text('rs:k:2'));
    assert.equal(core.counters.rejections.internal_error, 1);
    fail = false;
    core.handle(0, HOST, text('rs:k:2'));
    assert.deepEqual(sent, ['ok:4000']);
  });
});
