import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { drain } from '../src/core/index.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { V2_MAGIC } from '../src/protocol/magic.js';
import { decodeV2, encodeV2, padRegisterRequest } from '../src/protocol/v2.js';
import { isMemberEvent, RendezvousServer } from '../src/server/rendezvous.js';

const HOST: Endpoint = { address: '198.51.100.1', port: 4000 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function server(sessionTtlMs = 60_000, legacy = true) {
  const replies: string[] = [];
  const core = new RendezvousServer({
    sessionTtlMs,
    legacy,
    randomBytes: (n) => new Uint8Array(n),
  });
  /** Every reply so far, as text; polls what the core queued since the last call. */
  const sent = (): string[] => {
    for (const work of drain(core)) {
      if (work.type === 'send') replies.push(new TextDecoder().decode(work.data));
    }
    return replies;
  };
  return { core, sent };
}

describe('rendezvous core: dispatch and counters', () => {
  test('a datagram from source port 0 (forged: no one can receive there) is counted and forgotten', () => {
    const { core, sent } = server(1_000);
    core.handle(0, HOST, text('rs:k:2'));
    core.handle(0, { address: '203.0.113.9', port: 0 }, text('rc:z:k:Z'));
    core.handle(0, { address: '203.0.113.9', port: 0 }, Uint8Array.from(V2_MAGIC));
    assert.deepEqual(sent(), ['ok:4000']);
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
    assert.deepEqual(sent(), ['ok:4000', 'ok:4000', 'lobby:Host:2']);
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
    assert.deepEqual(sent(), []);
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
    assert.equal(sent().length, 1, 'v2 registered');
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

  test('sessions of both protocols report their lifecycle as events in the work queue, in order', () => {
    const core = new RendezvousServer({ randomBytes: (n) => new Uint8Array(n) });
    core.handle(0, HOST, text('rs:legacy-lobby:2'));
    const host = { requestId: 1, maxPlayers: 2, name: 'h', nickname: 'H', candidates: [] };
    core.handle(0, HOST, encodeV2({ type: 'host', session: 'v2-lobby', ...host }));
    core.handle(0, HOST, text('rc:h:legacy-lobby:Host'));
    assert.deepEqual(
      drain(core).map((w) =>
        w.type === 'event' ? [w.event.type, w.event.protocol, isMemberEvent(w.event)] : w.type,
      ),
      [
        'send',
        ['created', 'legacy', false],
        ['created', 'v2', false],
        'send',
        'send',
        ['joined', 'legacy', true],
        'send',
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
    assert.equal(sent().at(-1), 'close:Session closed.');
    assert.equal(core.counters.sessionsExpired, 1);
  });

  test('shutdown tells members close:Server shutting down by default', () => {
    const { core, sent } = server();
    core.handle(0, HOST, text('rs:k:2'));
    core.handle(0, HOST, text('rc:h:k:Host'));
    core.shutdown(0);
    assert.equal(sent().at(-1), 'close:Server shutting down');
    assert.equal(core.sessionCount, 0);
  });

  test('nothing leaves before poll(), and every queued reply was counted when it was queued', () => {
    const { core } = server();
    core.handle(0, HOST, text('rs:k:2'));
    assert.equal(core.counters.datagramsOut, 1);
    assert.deepEqual(
      drain(core).map((w) => w.type),
      ['send', 'event'],
    );
    assert.equal(core.poll(), undefined);
  });
});

describe('rendezvous core: relay ports are sockets of the driver', () => {
  const JOINER: Endpoint = { address: '198.51.100.2', port: 5000 };
  const register = (msg: Parameters<typeof encodeV2>[0]) => padRegisterRequest(encodeV2(msg));

  /** A started v2 session of two, both validated; the work queue drained. */
  function started() {
    let seed = 0;
    const core = new RendezvousServer({
      randomBytes: (n) => Uint8Array.from({ length: n }, () => ++seed & 0xff),
      relayPorts: { low: 40_000, high: 40_009 },
    });
    const tokenFor = (to: Endpoint): Uint8Array => {
      for (const w of drain(core)) {
        if (w.type !== 'send' || w.to.port !== to.port) continue;
        const d = decodeV2(w.data);
        if (d.ok && d.msg.type === 'registered') return d.msg.token;
      }
      throw new Error('not registered');
    };
    const who = { nickname: '', candidates: [] };
    core.handle(
      0,
      HOST,
      register({ type: 'host', requestId: 1, session: 's', name: 'h', maxPlayers: 2, ...who }),
    );
    const hostToken = tokenFor(HOST);
    core.handle(
      0,
      JOINER,
      register({ type: 'join', requestId: 1, session: 's', name: 'j', ...who }),
    );
    const joinToken = tokenFor(JOINER);
    for (const [from, token] of [
      [HOST, hostToken],
      [JOINER, joinToken],
    ] as const) {
      core.handle(
        1,
        from,
        encodeV2({ type: 'keepalive', requestId: 2, session: 's', token, lobbyVersion: 0 }),
      );
    }
    core.handle(2, HOST, encodeV2({ type: 'start', requestId: 3, session: 's', token: hostToken }));
    drain(core);
    return { core, hostToken };
  }
  const allocate = (token: Uint8Array) =>
    encodeV2({ type: 'relay_allocate', requestId: 4, session: 's', token, peer: 'j' });

  test('an allocation binds its port (socket = port), grants once bound, and answers from that socket', () => {
    const { core, hostToken } = started();
    core.handle(4, HOST, allocate(hostToken));
    const [bind, relayed, ...others] = drain(core);
    assert.deepEqual(bind, { type: 'bind', socket: 40_000, port: 40_000 });
    // The new allocation is also reported, for the operator's log (a member event).
    assert.equal(relayed?.type === 'event' && relayed.event.type, 'relayed');
    assert.deepEqual(others, []);
    core.bound(5, 40_000, true);
    const [grant, ...more] = drain(core);
    assert.deepEqual(more, []);
    if (grant?.type !== 'send') throw new Error('no grant sent');
    assert.equal(grant.socket, undefined, 'granted from the main socket');
    const g = decodeV2(grant.data);
    if (!g.ok || g.msg.type !== 'relay_granted') throw new Error('no grant');

    const out = core.counters.datagramsOut;
    core.handle(
      6,
      HOST,
      encodeV2({ type: 'relay_bind', requestId: 5, id: g.msg.id, proof: g.msg.bindToken }),
      g.msg.port,
    );
    const [ack, ...rest] = drain(core);
    assert.deepEqual(rest, []);
    assert.equal(ack?.type === 'send' && ack.socket, 40_000, 'acknowledged from the relay port');
    assert.equal(core.counters.datagramsOut, out + 1);

    core.shutdown(7);
    assert.ok(drain(core).some((w) => w.type === 'unbind' && w.socket === 40_000));
  });

  test('a port that cannot be bound moves the allocation on; bind answers for other sockets change nothing', () => {
    const { core, hostToken } = started();
    core.handle(4, HOST, allocate(hostToken));
    drain(core);
    core.bound(5, 40_000, false);
    assert.deepEqual(drain(core), [{ type: 'bind', socket: 40_001, port: 40_001 }]);
    assert.equal(core.counters.rejections.relay_port_failed, 1);
    core.bound(6, 2, false);
    assert.deepEqual(drain(core), []);
    assert.equal(core.counters.rejections.relay_port_failed, 1);
  });

  test('a datagram on a relay port without an allocation is counted there, never served as a request', () => {
    const { core } = server();
    core.handle(0, HOST, text('rs:k:2'), 40_000);
    assert.deepEqual(drain(core), []);
    assert.equal(core.counters.rejections.relay_no_allocation, 1);
    assert.equal(core.sessionCount, 0);
  });

  test('relay port ranges below 1024 are refused: those socket ids are the main and probe sockets', () => {
    assert.throws(
      () => new RendezvousServer({ relayPorts: { low: 1, high: 100 } }),
      /relay ports must be LOW-HIGH, ports 1024-65535/,
    );
    assert.throws(() => new RendezvousServer({ relayPorts: { low: 1023, high: 2000 } }));
    assert.doesNotThrow(() => new RendezvousServer({ relayPorts: { low: 1024, high: 1024 } }));
  });
});
