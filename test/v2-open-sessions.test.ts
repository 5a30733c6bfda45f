/**
 * Revision 1 of v2 in the server core (docs/protocol-v2.md §2 "Revisions", §4 "Open sessions"):
 * a host's keepOpen takes late joiners and rejoins after the start, its silence tunes how long a
 * crashed player stays, and revision-0 clients get the messages they always did.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { decodeV2, encodeV2, padRegisterRequest, type V2Message } from '../src/protocol/v2.js';
import { createCounters } from '../src/server/counters.js';
import type { MemberLifecycleEvent } from '../src/server/lifecycle.js';
import { MEMBER_SILENCE_MS, STARTED_LINGER_MS, V2Sessions } from '../src/server/v2-sessions.js';
import { seededBytes, seededRandom } from '../src/sim/random.js';

const HOST: Endpoint = { address: '198.51.100.1', port: 1111 };
const BOB: Endpoint = { address: '198.51.100.2', port: 2222 };
const CAROL: Endpoint = { address: '198.51.100.3', port: 3333 };
const STRANGER: Endpoint = { address: '203.0.113.66', port: 6666 };

type Sent = { to: Endpoint; msg: V2Message };

function setup() {
  const sent: Sent[] = [];
  const members: MemberLifecycleEvent[] = [];
  const server = new V2Sessions({
    outbox: {
      send(to, data) {
        const d = decodeV2(data);
        assert.ok(d.ok, 'the server only sends decodable datagrams');
        if (d.ok) sent.push({ to, msg: d.msg });
      },
    },
    onMember: (e) => members.push(e),
    counters: createCounters(),
    randomBytes: seededBytes(seededRandom(7)),
    sessionTtlMs: 60_000,
    maxSessions: 10,
    maxPlayersCap: 8,
    autostart: true,
  });
  const send = (now: number, from: Endpoint, msg: Parameters<typeof encodeV2>[0]): Sent[] => {
    sent.length = 0;
    const bytes = encodeV2(msg);
    server.handle(
      now,
      from,
      msg.type === 'host' || msg.type === 'join' ? padRegisterRequest(bytes) : bytes,
    );
    if (server.nextDeadline() <= now) server.handleTimeout(now);
    return [...sent];
  };
  const tick = (now: number): Sent[] => {
    sent.length = 0;
    server.handleTimeout(now);
    return [...sent];
  };
  /** Registers and validates; returns the token and the `registered` answer. */
  const enter = (
    now: number,
    from: Endpoint,
    msg: Parameters<typeof encodeV2>[0] & { type: 'host' | 'join' },
  ) => {
    const reg = send(now, from, msg).find((o) => o.msg.type === 'registered')?.msg;
    if (reg?.type !== 'registered') throw new Error(`not registered: ${JSON.stringify(sent)}`);
    const out = send(now, from, {
      type: 'keepalive',
      requestId: 99,
      session: 'game',
      token: reg.token,
      lobbyVersion: 0,
    });
    return { token: reg.token, registered: reg, out };
  };
  return { server, send, tick, enter, members, sent };
}

const who = (name: string) => ({ name, nickname: name, candidates: [] as Endpoint[] });
const host = (extra: Record<string, unknown> = {}) =>
  ({
    type: 'host',
    requestId: 1,
    session: 'game',
    maxPlayers: 4,
    ...who('alice'),
    revision: 1,
    keepOpenS: 120,
    silenceS: 0,
    ...extra,
  }) as const;
const join = (name: string, revision = 1) =>
  ({ type: 'join', requestId: 1, session: 'game', ...who(name), revision }) as const;

function peersTo(out: Sent[], to: Endpoint) {
  const m = out.filter((o) => o.to.port === to.port && o.msg.type === 'peers').at(-1)?.msg;
  return m?.type === 'peers' ? m : undefined;
}

/** Host and bob in an open session of 4, started by the host. */
function openGame() {
  const t = setup();
  const a = t.enter(0, HOST, host());
  const b = t.enter(1, BOB, join('bob'));
  const started = t.send(2, HOST, { type: 'start', requestId: 3, session: 'game', token: a.token });
  return { ...t, a, b, started };
}

describe('v2 revision 1: open sessions, silence, keepalive', () => {
  it('revision 1 members get the keepalive period and the peer list version; revision 0 ones the old bytes', () => {
    const t = setup();
    const a = t.enter(0, HOST, host({ silenceS: 9 }));
    assert.equal(a.registered.keepaliveMs, 3000, 'a third of the 9 s silence');
    const old = t.enter(1, BOB, join('bob', 0));
    assert.equal(old.registered.keepaliveMs, undefined, 'revision 0: no trailer');
    const start = t.send(2, HOST, { type: 'start', requestId: 3, session: 'game', token: a.token });
    const toHost = peersTo(start, HOST);
    const toBob = peersTo(start, BOB);
    assert.equal(toHost?.version, 1);
    assert.equal(toHost?.openS, 120);
    assert.equal(toBob?.version, undefined, 'revision 0: no trailer');
  });

  it('a silence outside 6-60 s is refused with bad_request; the chosen silence drops a crashed player', () => {
    const t = setup();
    const refused = t.send(0, HOST, host({ silenceS: 5 })).at(-1)?.msg;
    assert.equal(refused?.type === 'error' && refused.code, 'bad_request');
    const a = t.enter(1, HOST, host({ silenceS: 6, keepOpenS: 0 }));
    t.enter(1, BOB, join('bob'));
    // Bob crashes; the host keeps sending keepalives.
    for (let now = 2_000; now <= 7_000; now += 2_000) {
      t.send(now, HOST, {
        type: 'keepalive',
        requestId: now,
        session: 'game',
        token: a.token,
        lobbyVersion: 0,
      });
    }
    const out = t.tick(7_001);
    const lobby = out.find((o) => o.msg.type === 'lobby')?.msg;
    assert.ok(lobby?.type === 'lobby', 'the host hears the new lobby 6 s after bob went silent');
    if (lobby?.type === 'lobby') assert.deepEqual(lobby.nicknames, ['alice']);
    assert.ok(7_001 < 1 + MEMBER_SILENCE_MS, 'sooner than the default');
    assert.ok(
      t.members.some((e) => e.type === 'left' && e.name === 'bob' && e.reason === 'silent'),
    );
  });

  it('an open session stays after every ack, takes a late joiner and pushes the new list to everyone', () => {
    const t = openGame();
    for (const [from, token] of [
      [HOST, t.a.token],
      [BOB, t.b.token],
    ] as const) {
      t.send(3, from, { type: 'peers_ack', requestId: 4, session: 'game', token, version: 1 });
    }
    assert.equal(t.server.sessionCount, 1, 'not forgotten once all acked');
    // Both keep their keepalive going (every 5 s), past the closed session's 15 s linger.
    for (let now = 5_000; now <= STARTED_LINGER_MS + 5_000; now += 5_000) {
      for (const [from, token] of [
        [HOST, t.a.token],
        [BOB, t.b.token],
      ] as const) {
        t.send(now, from, {
          type: 'keepalive',
          requestId: now,
          session: 'game',
          token,
          lobbyVersion: 1,
        });
      }
    }
    const c = t.enter(STARTED_LINGER_MS + 5_010, CAROL, join('carol'));
    const toHost = peersTo(c.out, HOST);
    const toBob = peersTo(c.out, BOB);
    const toCarol = peersTo(c.out, CAROL);
    assert.equal(toHost?.version, 2);
    assert.deepEqual(toHost?.peers.map((p) => p.name).sort(), ['bob', 'carol']);
    assert.deepEqual(toBob?.peers.map((p) => p.name).sort(), ['alice', 'carol']);
    assert.deepEqual(toCarol?.peers.map((p) => p.name).sort(), ['alice', 'bob']);
    assert.ok(toCarol !== undefined && toCarol.openS !== undefined && toCarol.openS <= 120 - 20);
    assert.ok(
      t.members.some((e) => e.type === 'joined' && e.name === 'carol' && e.reason === 'late'),
    );
  });

  it('without keepOpen a started session still refuses late joiners (session_full)', () => {
    const t = setup();
    const a = t.enter(0, HOST, host({ keepOpenS: 0 }));
    t.enter(1, BOB, join('bob'));
    t.send(2, HOST, { type: 'start', requestId: 3, session: 'game', token: a.token });
    const late = t.send(3, CAROL, join('carol')).at(-1)?.msg;
    assert.equal(late?.type === 'error' && late.code, 'session_full');
  });

  it('rejoin: the same name from its own IP replaces the member at once; a stranger gets name_taken until the member is silent a keepalive period', () => {
    const t = openGame();
    const fromStranger = t.send(3, STRANGER, join('bob')).at(-1)?.msg;
    assert.equal(fromStranger?.type === 'error' && fromStranger.code, 'name_taken');
    // Bob's game restarted: same address, another port.
    const again = t.enter(4, { address: BOB.address, port: 2999 }, join('bob'));
    const toHost = peersTo(again.out, HOST);
    assert.equal(toHost?.version, 2);
    assert.deepEqual(
      toHost?.peers.map((p) => `${p.name} ${p.publicEndpoint.port}`),
      ['bob 2999'],
    );
    // Silent for one keepalive period (5 s of the default 15 s): anyone may take the name.
    const later = t.enter(4 + 5_000, STRANGER, join('bob'));
    assert.equal(peersTo(later.out, HOST)?.version, 3);
    assert.ok(t.members.some((e) => e.type === 'left' && e.reason === 'rejoined'));
  });

  it("the open session ends with its host: leave tells the others closed host_left; keepOpen's end forgets it", () => {
    const t = openGame();
    const out = t.send(3, HOST, { type: 'leave', requestId: 9, session: 'game', token: t.a.token });
    const closed = out.find((o) => o.to.port === BOB.port && o.msg.type === 'closed')?.msg;
    assert.equal(closed?.type === 'closed' && closed.code, 'host_left');
    assert.equal(t.server.sessionCount, 0);

    const u = openGame();
    for (let now = 5_000; now < 120_000; now += 5_000) {
      for (const [from, token] of [
        [HOST, u.a.token],
        [BOB, u.b.token],
      ] as const) {
        u.send(now, from, {
          type: 'keepalive',
          requestId: now,
          session: 'game',
          token,
          lobbyVersion: 1,
        });
      }
    }
    assert.equal(u.server.sessionCount, 1);
    u.tick(120_003);
    assert.equal(u.server.sessionCount, 0, 'forgotten at the end of keepOpen');
  });

  it('a member of an open session that goes silent is pushed as peer_left silent and leaves the list', () => {
    const t = openGame();
    t.send(3, BOB, {
      type: 'peers_ack',
      requestId: 4,
      session: 'game',
      token: t.b.token,
      version: 1,
    });
    for (let now = 5_000; now <= 15_000; now += 5_000) {
      t.send(now, HOST, {
        type: 'keepalive',
        requestId: now,
        session: 'game',
        token: t.a.token,
        lobbyVersion: 1,
      });
    }
    const out = t.tick(3 + MEMBER_SILENCE_MS);
    const left = out.find((o) => o.to.port === HOST.port && o.msg.type === 'peer_left')?.msg;
    assert.ok(left?.type === 'peer_left' && left.name === 'bob' && left.why === 'silent');
    const reply = t.send(16_500, HOST, {
      type: 'keepalive',
      requestId: 1,
      session: 'game',
      token: t.a.token,
      lobbyVersion: 1,
    });
    assert.deepEqual(peersTo(reply, HOST)?.peers, []);
  });

  it('v2 joins, refusals and leaves are member events for the log', () => {
    const t = setup();
    t.send(0, CAROL, join('carol'));
    assert.deepEqual(
      t.members.map((e) => [e.type, e.protocol, e.key, e.name, e.reason]),
      [['refused', 'v2', 'game', 'carol', 'session_not_found']],
    );
    const a = t.enter(1, HOST, host());
    const b = t.enter(2, BOB, join('bob'));
    t.send(3, BOB, { type: 'leave', requestId: 5, session: 'game', token: b.token });
    assert.deepEqual(
      t.members.slice(1).map((e) => [e.type, e.name, e.reason]),
      [
        ['joined', 'alice', undefined],
        ['joined', 'bob', undefined],
        ['left', 'bob', 'left'],
      ],
    );
    assert.ok(a.token.length > 0);
  });
});

describe('v2 revision 1: a server shutdown is not a host close (issue 21 point 15)', () => {
  const closedTo = (out: readonly Sent[], to: Endpoint) =>
    out
      .filter((o) => o.to.port === to.port && o.msg.type === 'closed')
      .map((o) => (o.msg.type === 'closed' ? o.msg.code : ''));
  /** A waiting lobby of 4: the host and bob of revision 1, carol of revision 0. */
  const lobby = () => {
    const t = setup();
    const a = t.enter(0, HOST, host({ keepOpenS: 0 }));
    t.enter(1, BOB, join('bob'));
    t.enter(2, CAROL, join('carol', 0));
    t.sent.length = 0;
    return { ...t, a };
  };

  for (const how of ['shutdown', 'drain'] as const) {
    it(`${how}: revision 1 members hear server_shutdown, a revision 0 one session_closed as before`, () => {
      const t = lobby();
      if (how === 'shutdown') t.server.shutdown(5, 'The server is shutting down.');
      else t.server.drain(5, 'The server is shutting down.');
      assert.deepEqual(closedTo(t.sent, HOST), ['server_shutdown']);
      assert.deepEqual(closedTo(t.sent, BOB), ['server_shutdown']);
      assert.deepEqual(closedTo(t.sent, CAROL), ['session_closed']);
    });
  }

  it("the host's close is session_closed for everyone", () => {
    const t = lobby();
    const out = t.send(5, HOST, {
      type: 'close',
      requestId: 5,
      session: 'game',
      token: t.a.token,
      reason: 'bye',
    });
    assert.deepEqual(closedTo(out, BOB), ['session_closed']);
    assert.deepEqual(closedTo(out, CAROL), ['session_closed']);
  });

  it('a started open session stopped by the server: server_shutdown to revision 1 members', () => {
    const t = setup();
    const a = t.enter(0, HOST, host());
    t.enter(1, BOB, join('bob'));
    t.send(2, HOST, { type: 'start', requestId: 3, session: 'game', token: a.token });
    t.sent.length = 0;
    t.server.shutdown(3, 'The server is shutting down.');
    assert.deepEqual(closedTo(t.sent, BOB), ['server_shutdown']);
  });
});
