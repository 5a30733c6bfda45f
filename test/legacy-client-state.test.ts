import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type LegacyClientEvent,
  LegacyClientState,
  type LegacyClientWork,
  PEER_TICK_MS,
  PLUGIN_PUNCH_BUDGET_MS,
  REGISTER_DELAY_MS,
} from '../src/client-legacy/index.js';
import { drain } from '../src/core/index.js';
import { decodeLegacyPeerMessage, decodeLegacyServerMessage } from '../src/protocol/index.js';

const SERVER = { address: '203.0.113.10', port: 4000 };
const text = (data: Uint8Array) => new TextDecoder().decode(data);
const bytes = (s: string) => new TextEncoder().encode(s);

function client(role: 'host' | 'join', name: string) {
  return new LegacyClientState({
    role,
    session: 'game',
    name,
    nickname: `${name}-nick`,
    maxPlayers: 2,
    server: SERVER,
  });
}

const sends = (actions: LegacyClientWork[]) =>
  actions.flatMap((a) =>
    a.type === 'send' ? [{ to: `${a.to.address}:${a.to.port}`, text: text(a.data) }] : [],
  );
const events = (actions: LegacyClientWork[]) =>
  actions.flatMap((a): LegacyClientEvent[] => (a.type === 'event' ? [a.event] : []));

describe('legacy client state machine (original timings)', () => {
  it('a joiner stays silent for 2 s, then registers once from a new socket, without retransmitting', () => {
    const joiner = client('join', 'bob');
    joiner.start(0);
    assert.deepEqual(drain(joiner), []);
    assert.equal(joiner.nextDeadline(), REGISTER_DELAY_MS);
    joiner.handleTimeout(REGISTER_DELAY_MS - 1);
    assert.deepEqual(sends(drain(joiner)), []);
    joiner.handleTimeout(REGISTER_DELAY_MS);
    const out = drain(joiner);
    assert.deepEqual(
      out[0],
      { type: 'bind', socket: 0, port: 0 },
      '_send_client_to_server closes the 4000 socket',
    );
    assert.deepEqual(sends(out), [{ to: '203.0.113.10:4000', text: 'rc:bob:game:bob-nick' }]);
    assert.equal(joiner.nextDeadline(), Infinity, 'nothing is retransmitted, like the original');
  });

  it('the host registers the session from its bound socket, then itself 2 s after the first ok: from a new socket', () => {
    const host = client('host', 'alice');
    host.start(0);
    assert.deepEqual(drain(host), [{ type: 'send', to: SERVER, data: bytes('rs:game:2') }]);
    host.handle(5, SERVER, bytes('ok:4000'));
    const out = drain(host);
    assert.deepEqual(sends(out), [], 'the host waits 2 s too');
    assert.deepEqual(events(out), [{ event: 'registered', publicPort: 4000 }]);
    assert.equal(host.nextDeadline(), 5 + REGISTER_DELAY_MS);
    host.handleTimeout(5 + REGISTER_DELAY_MS);
    const rc = drain(host);
    assert.deepEqual(rc[0], { type: 'bind', socket: 0, port: 0 });
    assert.deepEqual(sends(rc), [{ to: '203.0.113.10:4000', text: 'rc:alice:game:alice-nick' }]);
    host.handle(2010, SERVER, bytes('ok:50001'));
    assert.deepEqual(
      drain(host),
      [{ type: 'event', event: { event: 'registered', publicPort: 50001 } }],
      'a second ok: does not register twice',
    );
  });

  it('a refused registration (ok: then close:) checks out and fails with the plugin message', () => {
    const joiner = client('join', 'bob');
    joiner.start(0);
    joiner.handleTimeout(REGISTER_DELAY_MS);
    drain(joiner);
    joiner.handle(2010, SERVER, bytes('ok:4000'));
    joiner.handle(2011, SERVER, bytes('close:Client registered for non-existing session'));
    const out = drain(joiner);
    assert.deepEqual(sends(out), [{ to: '203.0.113.10:4000', text: 'cc:bob' }]);
    assert.deepEqual(events(out).at(-1), {
      event: 'failed',
      code: 'session_closed',
      reason: 'server_closed',
      message: 'Disconnected: Client registered for non-existing session',
    });
    assert.equal(joiner.finished, true);
  });

  it('on peers: it listens on the public port the server saw and greets every 100 ms, then cascades after 5 greets', () => {
    const joiner = client('join', 'bob');
    joiner.start(0);
    joiner.handleTimeout(REGISTER_DELAY_MS);
    joiner.handle(2001, SERVER, bytes('ok:40001'));
    drain(joiner);
    joiner.handle(2002, SERVER, bytes('peers:alice:198.51.100.11:4000:True'));
    const first = drain(joiner);
    assert.deepEqual(
      first.find((a) => a.type === 'bind' && a.port !== 0),
      { type: 'bind', socket: 0, port: 40001 },
    );
    assert.deepEqual(
      first.filter((a) => a.type !== 'event').map((a) => (a.type === 'send' ? text(a.data) : a)),
      [
        { type: 'bind', socket: 0, port: 0 },
        'goodbye',
        { type: 'bind', socket: 0, port: 40001 },
        'greet:bob:40001:4000',
      ],
      'start_peer_contact: goodbye through a fresh socket (the server one was just closed), then listen',
    );
    for (let tick = 1; tick < 5; tick++) {
      assert.equal(joiner.nextDeadline(), 2002 + tick * PEER_TICK_MS);
      joiner.handleTimeout(2002 + tick * PEER_TICK_MS);
      assert.equal(sends(drain(joiner)).length, 1, `tick ${tick} sends one greet`);
    }
    joiner.handleTimeout(2002 + 5 * PEER_TICK_MS);
    const cascade = sends(drain(joiner));
    const ports = cascade.map((s) => Number(s.to.split(':')[1])).sort((a, b) => a - b);
    assert.equal(ports.length, 20, 'the greet plus 19 other ports of the 20 around the peer port');
    assert.equal(ports[0], 3990);
    assert.equal(ports.at(-1), 4009);
    assert.ok(cascade.every((s) => s.text === `greet:bob:40001:${s.to.split(':')[1]}`));
  });

  it('two clients complete greet, confirm and go over a lossless network', () => {
    const host = client('host', 'alice');
    const joiner = client('join', 'bob');
    const hostPublic = { address: '198.51.100.11', port: 4000 };
    const joinerPublic = { address: '198.51.100.12', port: 4000 };
    host.start(0);
    joiner.start(0);
    host.handle(1, SERVER, bytes('ok:4000'));
    joiner.handle(2001, SERVER, bytes('ok:4000'));
    host.handle(2002, SERVER, bytes('peers:bob:198.51.100.12:4000:False'));
    joiner.handle(2002, SERVER, bytes('peers:alice:198.51.100.11:4000:True'));
    const seen: LegacyClientEvent[] = [];
    let now = 2002;
    for (let round = 0; round < 50 && !(host.finished && joiner.finished); round++) {
      for (const [from, self, other, otherFrom] of [
        [hostPublic, host, joiner, joinerPublic],
        [joinerPublic, joiner, host, hostPublic],
      ] as const) {
        for (const action of drain(self)) {
          if (action.type === 'event') seen.push(action.event);
          if (
            action.type === 'send' &&
            action.to.address === otherFrom.address &&
            action.to.port === otherFrom.port
          ) {
            other.handle(now, from, action.data);
          }
        }
      }
      now += PEER_TICK_MS;
      host.handleTimeout(now);
      joiner.handleTimeout(now);
    }
    for (const self of [host, joiner])
      for (const a of drain(self)) if (a.type === 'event') seen.push(a.event);
    const punched = seen.filter((e) => e.event === 'punched');
    assert.equal(punched.length, 2, 'both sides report hole_punched');
    const joinerView = punched.find((e) => e.event === 'punched' && e.peers[0]?.name === 'alice');
    assert.ok(joinerView?.event === 'punched');
    assert.deepEqual(joinerView.peers[0], {
      name: 'alice',
      address: '198.51.100.11',
      port: 4000,
      path: 'public',
      isHost: true,
    });
    assert.ok(now - 2002 < 1_000, 'a lossless handshake takes a few 100 ms ticks');
  });

  it('a peer that never answers ends the attempt with punch_failed after the budget, not a hang', () => {
    const joiner = client('join', 'bob');
    joiner.start(0);
    joiner.handleTimeout(REGISTER_DELAY_MS);
    joiner.handle(2001, SERVER, bytes('ok:4000'));
    joiner.handle(2002, SERVER, bytes('peers:alice:198.51.100.11:4000'));
    let last: LegacyClientEvent | undefined;
    let endedAt = 0;
    for (let i = 0; i < 1_000 && !joiner.finished; i++) {
      endedAt = joiner.nextDeadline();
      joiner.handleTimeout(endedAt);
      last = events(drain(joiner)).at(-1) ?? last;
    }
    assert.equal(joiner.finished, true);
    assert.equal(last?.event, 'failed');
    assert.equal(last?.event === 'failed' ? last.code : '', 'punch_failed');
    assert.equal(endedAt, 2002 + PLUGIN_PUNCH_BUDGET_MS, 'the budget counts from peers:');
    assert.equal(joiner.nextDeadline(), Infinity);
  });

  it('reads server replies only before peers: and the handshake only after', () => {
    const joiner = client('join', 'bob');
    joiner.start(0);
    joiner.handleTimeout(REGISTER_DELAY_MS);
    drain(joiner);
    const peer = { address: '198.51.100.11', port: 4000 };
    joiner.handle(2001, peer, bytes('greet:alice:4000:40001'));
    joiner.handle(2001, { address: SERVER.address, port: 4001 }, bytes('ok:40009'));
    joiner.handle(2001, SERVER, bytes('ok:40001'));
    assert.deepEqual(events(drain(joiner)), [{ event: 'registered', publicPort: 40001 }]);
    joiner.handle(2002, SERVER, bytes('peers:alice:198.51.100.11:4000'));
    drain(joiner);
    joiner.handle(2003, SERVER, bytes('ok:40002'));
    joiner.handle(2003, SERVER, bytes('close:bye'));
    assert.deepEqual(drain(joiner), [], 'server replies are not read on the peer socket');
    joiner.handle(2004, peer, bytes('greet:alice:4000:40005'));
    assert.deepEqual(drain(joiner), [{ type: 'bind', socket: 0, port: 40005 }]);
  });

  it('a bind that fails ends the attempt with punch_failed/socket_error, naming the port', () => {
    const joiner = client('join', 'bob');
    joiner.start(0);
    joiner.handleTimeout(REGISTER_DELAY_MS);
    joiner.handle(2001, SERVER, bytes('ok:40001'));
    joiner.handle(2002, SERVER, bytes('peers:alice:198.51.100.11:4000'));
    drain(joiner);
    joiner.bound(2003, 0, true);
    assert.deepEqual(drain(joiner), []);
    joiner.bound(2003, 0, false);
    assert.deepEqual(drain(joiner), [
      {
        type: 'event',
        event: {
          event: 'failed',
          code: 'punch_failed',
          reason: 'socket_error',
          message: 'cannot listen on port 40001',
        },
      },
    ]);
    assert.equal(joiner.finished, true);
    assert.equal(joiner.nextDeadline(), Infinity);
  });

  it('decoders return undefined for any garbage instead of throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (data) => {
        decodeLegacyServerMessage(data);
        decodeLegacyPeerMessage(data);
      }),
    );
    for (const s of [
      'ok:',
      'ok:70000',
      'peers:a:b',
      'lobby:x',
      'greet:a:1',
      'confirm:x:a:True:1',
      'go',
    ]) {
      assert.equal(
        s.startsWith('peers')
          ? decodeLegacyServerMessage(bytes(s))
          : (decodeLegacyServerMessage(bytes(s)) ?? decodeLegacyPeerMessage(bytes(s))),
        undefined,
        s,
      );
    }
  });
});
