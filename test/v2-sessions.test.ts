import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { decodeV2, encodeV2, type V2Message } from '../src/protocol/v2.js';
import { createCounters } from '../src/server/counters.js';
import { RELAY_IDLE_MS } from '../src/server/v2-relay.js';
import {
  MEMBER_SILENCE_MS,
  PEERS_ACK_WITHIN_MS,
  PEERS_MAX_TRIES,
  RELAY_ASK_WINDOW_MS,
  STARTED_NAME_MEMORY_MS,
  V2Sessions,
  VALIDATE_WITHIN_MS,
} from '../src/server/v2-sessions.js';
import { seededBytes, seededRandom } from '../src/sim/random.js';

const HOST: Endpoint = { address: '198.51.100.1', port: 1111 };
const JOINER: Endpoint = { address: '198.51.100.2', port: 2222 };
const ATTACKER: Endpoint = { address: '203.0.113.66', port: 6666 };

function setup(
  overrides: { autostart?: boolean; maxSessions?: number; ttl?: number; relay?: boolean } = {},
) {
  const sent: { to: Endpoint; msg: V2Message; bytes: number }[] = [];
  const counters = createCounters();
  const lifecycle: string[] = [];
  const relaySent: { port: number; to: Endpoint; data: Uint8Array }[] = [];
  const closedPorts: number[] = [];
  const server: V2Sessions = new V2Sessions({
    onLifecycle: (e) => lifecycle.push(`${e.type} ${e.protocol} ${e.key} ${e.members}`),
    outbox: {
      send(to, data) {
        const d = decodeV2(data);
        assert.ok(d.ok, 'the server only sends decodable datagrams');
        if (d.ok) sent.push({ to, msg: d.msg, bytes: data.length });
      },
    },
    counters,
    randomBytes: seededBytes(seededRandom(42)),
    sessionTtlMs: overrides.ttl ?? 60_000,
    maxSessions: overrides.maxSessions ?? 10,
    maxPlayersCap: 8,
    autostart: overrides.autostart ?? true,
    relay: overrides.relay ?? true,
    relayIo: {
      open: (port) => server.relay?.portOpened(0, port),
      close: (port) => closedPorts.push(port),
      send: (port, to, data) => relaySent.push({ port, to, data }),
    },
    relayPorts: { low: 40_000, high: 40_009 },
  });
  const send = (now: number, from: Endpoint, msg: Parameters<typeof encodeV2>[0]) => {
    sent.length = 0;
    server.handle(now, from, encodeV2(msg));
    // As the driver does once the datagrams at hand are handled: run what is due now.
    if (server.nextDeadline() <= now) server.handleTimeout(now);
    return [...sent];
  };
  const reply = (out: { msg: V2Message }[], requestId: number) =>
    out.find((o) => o.msg.requestId === requestId)?.msg;
  /** What a client does right after `registered`: use the token (proves its address). */
  const keepalive = (now: number, from: Endpoint, token: Uint8Array, requestId = 77) =>
    send(now, from, { type: 'keepalive', requestId, session: 'game', token, lobbyVersion: 0 });
  return { server, counters, send, sent, reply, keepalive, lifecycle, relaySent, closedPorts };
}

function hostAndJoin(autostart = false, relay = true) {
  const t = setup({ autostart, relay });
  const h = t.reply(
    t.send(0, HOST, {
      type: 'host',
      requestId: 1,
      session: 'game',
      maxPlayers: 3,
      name: 'alice',
      nickname: 'Alice',
      candidates: [],
    }),
    1,
  );
  const j = t.reply(
    t.send(1, JOINER, {
      type: 'join',
      requestId: 1,
      session: 'game',
      name: 'bob',
      nickname: 'Bob',
      candidates: [{ address: '10.0.0.2', port: 2222 }],
    }),
    1,
  );
  assert.ok(h?.type === 'registered' && j?.type === 'registered');
  if (h?.type !== 'registered' || j?.type !== 'registered') throw new Error('unreachable');
  t.keepalive(2, HOST, h.token);
  t.keepalive(2, JOINER, j.token);
  return { ...t, hostToken: h.token, joinToken: j.token };
}

describe('v2 session table', () => {
  it('registers host and joiner, tells both the lobby, and reports each observed endpoint', () => {
    const t = setup();
    const out = t.send(0, HOST, {
      type: 'host',
      requestId: 5,
      session: 'game',
      maxPlayers: 2,
      name: 'alice',
      nickname: 'Alice',
      candidates: [],
    });
    const reg = t.reply(out, 5);
    assert.ok(reg?.type === 'registered');
    if (reg?.type !== 'registered') return;
    assert.deepEqual(reg.observed, HOST);
    assert.equal(out.length, 1, 'nothing but registered before the address is shown');
    const lobby = t.reply(t.keepalive(1, HOST, reg.token, 6), 6);
    assert.ok(lobby?.type === 'lobby');
    if (lobby?.type === 'lobby') assert.deepEqual(lobby.nicknames, ['Alice']);
    const joined = t.send(2, JOINER, {
      type: 'join',
      requestId: 9,
      session: 'game',
      name: 'bob',
      nickname: 'Bob 🎮',
      candidates: [],
    });
    assert.equal(joined.length, 1, 'the host hears of bob once bob has shown his address');
    const jreg = t.reply(joined, 9);
    assert.ok(jreg?.type === 'registered');
    if (jreg?.type !== 'registered') return;
    const out2 = t.keepalive(3, JOINER, jreg.token, 10);
    // Full with autostart: lobby to both, then peers to both.
    for (const to of [HOST, JOINER]) {
      const l = out2.find((o) => o.msg.type === 'lobby' && o.to === to)?.msg;
      assert.ok(l?.type === 'lobby' && l.nicknames.join() === 'Alice,Bob 🎮', 'full lobby first');
    }
    const peersToHost = out2.find((o) => o.msg.type === 'peers' && o.to === HOST)?.msg;
    assert.ok(peersToHost?.type === 'peers');
    if (peersToHost?.type === 'peers') {
      assert.equal(peersToHost.peers[0]?.name, 'bob');
      assert.deepEqual(peersToHost.peers[0]?.publicEndpoint, JOINER);
    }
    const peersToJoiner = out2.find((o) => o.msg.type === 'peers' && o.to === JOINER)?.msg;
    assert.ok(peersToJoiner?.type === 'peers' && peersToJoiner.peers[0]?.isHost === true);
    assert.equal(t.counters.sessionsStarted, 1);
  });

  it("passes each member's NAT class on in its peer entry (absent = unknown)", () => {
    const t = setup();
    const h = t.reply(
      t.send(0, HOST, {
        type: 'host',
        requestId: 1,
        session: 'game',
        maxPlayers: 2,
        name: 'alice',
        nickname: 'Alice',
        candidates: [],
        nat: 'edm-random',
      }),
      1,
    );
    const j = t.reply(
      t.send(1, JOINER, {
        type: 'join',
        requestId: 1,
        session: 'game',
        name: 'bob',
        nickname: 'Bob',
        candidates: [],
      }),
      1,
    );
    if (h?.type !== 'registered' || j?.type !== 'registered') throw new Error('not registered');
    t.keepalive(2, HOST, h.token);
    const out = t.keepalive(3, JOINER, j.token);
    const toJoiner = out.find((o) => o.msg.type === 'peers' && o.to === JOINER)?.msg;
    const toHost = out.find((o) => o.msg.type === 'peers' && o.to === HOST)?.msg;
    assert.ok(toJoiner?.type === 'peers' && toHost?.type === 'peers');
    if (toJoiner?.type !== 'peers' || toHost?.type !== 'peers') return;
    assert.equal(toJoiner.peers[0]?.nat, 'edm-random');
    assert.equal(toHost.peers[0]?.nat, undefined, 'unknown is sent as 0 and decodes as absent');
  });

  it('a retried host or join gets the same token back; the same name elsewhere is refused', () => {
    const t = hostAndJoin();
    const again = t.reply(
      t.send(2, JOINER, {
        type: 'join',
        requestId: 2,
        session: 'game',
        name: 'bob',
        nickname: 'Bob',
        candidates: [],
      }),
      2,
    );
    assert.ok(again?.type === 'registered');
    if (again?.type === 'registered') assert.deepEqual(again.token, t.joinToken);
    const stolen = t.reply(
      t.send(3, ATTACKER, {
        type: 'join',
        requestId: 3,
        session: 'game',
        name: 'bob',
        nickname: 'Bob',
        candidates: [],
      }),
      3,
    );
    assert.ok(stolen?.type === 'error' && stolen.code === 'name_taken');
    const hostAgain = t.reply(
      t.send(4, HOST, {
        type: 'host',
        requestId: 1,
        session: 'game',
        maxPlayers: 3,
        name: 'alice',
        nickname: 'Alice',
        candidates: [],
      }),
      1,
    );
    assert.ok(hostAgain?.type === 'registered');
    if (hostAgain?.type === 'registered') assert.deepEqual(hostAgain.token, t.hostToken);
  });

  it('a spoofed leave, start or close by a third party knowing the names changes nothing', () => {
    const t = hostAndJoin();
    const forged = new Uint8Array(16).fill(7);
    for (const msg of [
      { type: 'leave', requestId: 10, session: 'game', token: forged },
      { type: 'start', requestId: 11, session: 'game', token: forged },
      { type: 'close', requestId: 12, session: 'game', token: forged, reason: 'pwned' },
      // A member's own token does not make it the host.
      { type: 'start', requestId: 13, session: 'game', token: t.joinToken },
      { type: 'close', requestId: 14, session: 'game', token: t.joinToken, reason: 'x' },
    ] as const) {
      const from = msg.requestId >= 13 ? JOINER : ATTACKER;
      const out = t.send(5, from, msg);
      const r = t.reply(out, msg.requestId);
      assert.ok(r?.type === 'error' && r.code === 'not_authorized', `${msg.type} refused`);
      assert.equal(out.length, 1, 'nobody else hears about it');
    }
    assert.equal(t.server.sessionCount, 1);
    const lobby = t.reply(
      t.send(6, JOINER, {
        type: 'keepalive',
        requestId: 20,
        session: 'game',
        token: t.joinToken,
        lobbyVersion: 0,
      }),
      20,
    );
    assert.ok(lobby?.type === 'lobby');
    if (lobby?.type === 'lobby') assert.deepEqual(lobby.nicknames, ['Alice', 'Bob']);
    assert.ok((t.counters.rejections.v2_not_authorized ?? 0) >= 5);
  });

  it('the member leaves with its own token and the host is told the new lobby', () => {
    const t = hostAndJoin();
    const out = t.send(7, JOINER, {
      type: 'leave',
      requestId: 30,
      session: 'game',
      token: t.joinToken,
    });
    assert.equal(t.reply(out, 30)?.type, 'ok');
    const update = out.find((o) => o.to === HOST && o.msg.type === 'lobby')?.msg;
    assert.ok(update?.type === 'lobby');
    if (update?.type === 'lobby') assert.deepEqual(update.nicknames, ['Alice']);
  });

  it('the host closes with its token and every member hears closed with the reason', () => {
    const t = hostAndJoin();
    const out = t.send(8, HOST, {
      type: 'close',
      requestId: 31,
      session: 'game',
      token: t.hostToken,
      reason: 'Bye: all',
    });
    assert.equal(t.reply(out, 31)?.type, 'ok');
    const closed = out.find((o) => o.to === JOINER)?.msg;
    assert.ok(closed?.type === 'closed' && closed.reason === 'Bye: all');
    assert.equal(t.server.sessionCount, 0);
    assert.deepEqual(t.lifecycle, ['created v2 game 1', 'closed v2 game 2']);
  });

  it('the host starts early; peers are re-sent until acked, a bounded number of times', () => {
    const t = hostAndJoin(false);
    const out = t.send(9, HOST, {
      type: 'start',
      requestId: 40,
      session: 'game',
      token: t.hostToken,
    });
    assert.equal(t.reply(out, 40)?.type, 'ok');
    assert.equal(out.filter((o) => o.msg.type === 'peers').length, 2);
    t.send(10, HOST, { type: 'peers_ack', requestId: 41, session: 'game', token: t.hostToken });
    let resent = 0;
    const told: string[] = [];
    for (let now = 10; now < 20_000 && Number.isFinite(t.server.nextDeadline()); ) {
      now = Math.max(now, t.server.nextDeadline());
      t.sent.length = 0;
      t.server.handleTimeout(now);
      for (const o of t.sent) {
        if (o.msg.type === 'peer_left') {
          // The member that never acked is reported to the others, once.
          assert.deepEqual(o.to, HOST);
          assert.equal(now, 9 + PEERS_ACK_WITHIN_MS);
          told.push(`${o.msg.name} ${o.msg.why}`);
          continue;
        }
        assert.deepEqual(o.to, JOINER, 'only the member that did not ack');
        assert.equal(o.msg.type, 'peers');
        resent++;
      }
    }
    assert.equal(resent, PEERS_MAX_TRIES - 1);
    assert.deepEqual(told, ['bob silent']);
    assert.equal(t.server.sessionCount, 0, 'forgotten after the linger');
  });

  it('a late join for a session that started is told session_full (started), not session_not_found', () => {
    const t = hostAndJoin(false);
    t.send(9, HOST, { type: 'start', requestId: 40, session: 'game', token: t.hostToken });
    const late: Endpoint = { address: '198.51.100.3', port: 3333 };
    const join = (now: number, requestId: number) =>
      t.reply(
        t.send(now, late, {
          type: 'join',
          requestId,
          session: 'game',
          name: 'carol',
          nickname: 'Carol',
          candidates: [],
        }),
        requestId,
      );
    const started = { code: 'session_full', message: 'The session has already started.' };
    const whileLingering = join(100, 1);
    assert.ok(whileLingering?.type === 'error');
    assert.deepEqual({ code: whileLingering.code, message: whileLingering.message }, started);
    // Long after the started session was forgotten, within STARTED_NAME_MEMORY_MS.
    while (t.server.nextDeadline() <= 30_000) t.server.handleTimeout(t.server.nextDeadline());
    assert.equal(t.server.sessionCount, 0);
    const forgotten = join(30_000, 2);
    assert.ok(forgotten?.type === 'error');
    assert.deepEqual({ code: forgotten.code, message: forgotten.message }, started);
    // A player of the started game (its IP) is back for the next one: it waits for the host.
    const back = t.reply(
      t.send(
        30_000,
        { address: JOINER.address, port: 9999 },
        {
          type: 'join',
          requestId: 4,
          session: 'game',
          name: 'bob',
          nickname: 'Bob',
          candidates: [],
        },
      ),
      4,
    );
    assert.ok(back?.type === 'error' && back.code === 'session_not_found');
    // After the window the name means nothing any more.
    const later = join(9 + STARTED_NAME_MEMORY_MS + 1, 3);
    assert.ok(later?.type === 'error' && later.code === 'session_not_found');
  });

  it('a new game under a started name takes its joiners at once', () => {
    const t = hostAndJoin(false);
    t.send(9, HOST, { type: 'start', requestId: 40, session: 'game', token: t.hostToken });
    while (t.server.nextDeadline() <= 30_000) t.server.handleTimeout(t.server.nextDeadline());
    const again = t.reply(
      t.send(30_000, HOST, {
        type: 'host',
        requestId: 5,
        session: 'game',
        maxPlayers: 2,
        name: 'alice',
        nickname: 'Alice',
        candidates: [],
      }),
      5,
    );
    assert.equal(again?.type, 'registered');
    const joined = t.reply(
      t.send(
        30_001,
        { address: '198.51.100.3', port: 3333 },
        {
          type: 'join',
          requestId: 6,
          session: 'game',
          name: 'carol',
          nickname: 'Carol',
          candidates: [],
        },
      ),
      6,
    );
    assert.equal(joined?.type, 'registered');
  });

  it('a waiting session expires and its members are told', () => {
    const t = setup({ ttl: 1000 });
    const reg = t.reply(
      t.send(0, HOST, {
        type: 'host',
        requestId: 1,
        session: 'game',
        maxPlayers: 2,
        name: 'a',
        nickname: 'A',
        candidates: [],
      }),
      1,
    );
    assert.ok(reg?.type === 'registered');
    if (reg?.type === 'registered') t.keepalive(0, HOST, reg.token);
    t.sent.length = 0;
    t.server.handleTimeout(999);
    assert.equal(t.server.sessionCount, 1);
    t.server.handleTimeout(1000);
    assert.equal(t.server.sessionCount, 0);
    const msg = t.sent[0]?.msg;
    assert.ok(msg?.type === 'closed' && msg.code === 'session_closed');
    assert.equal(t.counters.sessionsExpired, 1);
  });

  it("the host's keepalives keep a waiting session alive past its TTL; silence expires it", () => {
    const t = setup({ ttl: 1000 });
    const reg = t.reply(
      t.send(0, HOST, {
        type: 'host',
        requestId: 1,
        session: 'kept',
        maxPlayers: 2,
        name: 'a',
        nickname: 'A',
        candidates: [],
      }),
      1,
    );
    assert.ok(reg?.type === 'registered');
    if (reg?.type !== 'registered') return;
    for (let now = 800; now <= 4000; now += 800) {
      t.server.handleTimeout(now);
      t.send(now, HOST, {
        type: 'keepalive',
        requestId: now,
        session: 'kept',
        token: reg.token,
        lobbyVersion: 1,
      });
    }
    t.server.handleTimeout(4500);
    assert.equal(t.server.sessionCount, 1, 'alive 4.5 s into a 1 s TTL');
    assert.ok(t.server.nextDeadline() <= 5000);
    t.server.handleTimeout(5000);
    assert.equal(t.server.sessionCount, 0);
  });

  it('refuses beyond max sessions, bad sizes, a full lobby and unknown sessions with typed errors', () => {
    const t = setup({ maxSessions: 1 });
    const host = (requestId: number, session: string, maxPlayers = 2) =>
      t.reply(
        t.send(0, HOST, {
          type: 'host',
          requestId,
          session,
          maxPlayers,
          name: 'h',
          nickname: '',
          candidates: [],
        }),
        requestId,
      );
    assert.ok(host(1, 'a', 1)?.type === 'error');
    assert.ok(host(2, 'a', 99)?.type === 'error');
    assert.equal(host(3, 'a')?.type, 'registered');
    const full = host(4, 'b');
    assert.ok(full?.type === 'error' && full.code === 'server_full');
    const exists = t.reply(
      t.send(0, ATTACKER, {
        type: 'host',
        requestId: 5,
        session: 'a',
        maxPlayers: 2,
        name: 'h',
        nickname: '',
        candidates: [],
      }),
      5,
    );
    assert.ok(exists?.type === 'error' && exists.code === 'session_exists');
    const missing = t.reply(
      t.send(0, JOINER, {
        type: 'join',
        requestId: 6,
        session: 'nope',
        name: 'j',
        nickname: '',
        candidates: [],
      }),
      6,
    );
    assert.ok(missing?.type === 'error' && missing.code === 'session_not_found');
    // Garbage with a v2 header gets a typed answer; garbage without one is dropped silently.
    t.sent.length = 0;
    t.server.handle(0, ATTACKER, Uint8Array.of(0x89, 0x48, 0x50, 0x02, 0x01, 0, 0, 0, 9, 200));
    assert.ok(t.sent[0]?.msg.type === 'error' && t.sent[0].msg.code === 'bad_request');
    t.sent.length = 0;
    t.server.handle(0, ATTACKER, Uint8Array.of(0x89, 0x48, 0x50));
    assert.equal(t.sent.length, 0);
    assert.ok((t.counters.rejections.v2_malformed ?? 0) >= 1);
  });

  it('a host or join with a forged source gets no pushes aimed at that address and is dropped', () => {
    const t = hostAndJoin(true);
    const VICTIM: Endpoint = { address: '192.0.2.99', port: 53 };
    // The forger never sees the token: it went to the victim, the only datagram the victim gets.
    const out = t.send(3, VICTIM, {
      type: 'join',
      requestId: 50,
      session: 'game',
      name: 'mallory',
      nickname: 'M'.repeat(32),
      candidates: [],
    });
    assert.deepEqual(
      out.map((o) => `${o.msg.type}>${o.to.address}`),
      ['registered>192.0.2.99'],
    );
    const joinBytes = 9 + 1 + 4 + 1 + 7 + 1 + 32 + 1;
    const replyBytes = out[0]?.bytes ?? Number.POSITIVE_INFINITY;
    assert.ok(replyBytes <= 3 * joinBytes, `${replyBytes} B reply to a ${joinBytes} B join`);
    // The third slot is taken but nobody autostarts with, or lists, a member that never
    // showed its address; after VALIDATE_WITHIN_MS it is gone and the slot is free again.
    const lobby = t.reply(t.keepalive(4, HOST, t.hostToken, 51), 51);
    assert.ok(lobby?.type === 'lobby' && lobby.nicknames.join() === 'Alice,Bob');
    assert.equal(t.counters.sessionsStarted, 0);
    t.sent.length = 0;
    t.server.handleTimeout(3 + VALIDATE_WITHIN_MS);
    assert.ok(t.sent.every((o) => o.to !== VICTIM));
    assert.equal(t.counters.rejections.v2_unvalidated_member, 1);
    const carol = t.send(3 + VALIDATE_WITHIN_MS, ATTACKER, {
      type: 'join',
      requestId: 52,
      session: 'game',
      name: 'carol',
      nickname: 'Carol',
      candidates: [],
    });
    const reg = t.reply(carol, 52);
    assert.ok(reg?.type === 'registered', 'the slot is free again');
    if (reg?.type !== 'registered') return;
    const started = t.keepalive(4 + VALIDATE_WITHIN_MS, ATTACKER, reg.token);
    assert.equal(started.filter((o) => o.msg.type === 'peers').length, 3);
    assert.ok(started.every((o) => o.to !== VICTIM));

    // A forged `host` never gets its session going: it closes when the address stays silent.
    const forgedHost = t.send(0, VICTIM, {
      type: 'host',
      requestId: 53,
      session: 'trap',
      maxPlayers: 2,
      name: 'v',
      nickname: '',
      candidates: [],
    });
    assert.equal(forgedHost.length, 1);
    t.sent.length = 0;
    t.server.handleTimeout(VALIDATE_WITHIN_MS + 10);
    assert.ok(t.sent.every((o) => o.to !== VICTIM));
    const gone = t.reply(
      t.send(VALIDATE_WITHIN_MS + 11, JOINER, {
        type: 'join',
        requestId: 54,
        session: 'trap',
        name: 'j',
        nickname: '',
        candidates: [],
      }),
      54,
    );
    assert.ok(gone?.type === 'error' && gone.code === 'session_not_found');
  });

  it('an error is never more than 3 times the size of the datagram it answers', () => {
    const t = setup();
    for (let len = 9; len <= 80; len++) {
      const bytes = new Uint8Array(len).fill(0xff);
      bytes.set([0x89, 0x48, 0x50, 0x02, 0x01, 0, 0, 0, 9]);
      t.sent.length = 0;
      t.server.handle(0, ATTACKER, bytes);
      const r = t.sent[0]?.msg;
      assert.ok(r?.type === 'error' && r.code === 'bad_request', `answered at ${len} B`);
      const size = t.sent[0]?.bytes ?? Number.POSITIVE_INFINITY;
      assert.ok(size <= Math.max(3 * len, 9 + 2 + 'bad_request'.length), `${size} B for ${len} B`);
    }
    // A request large enough gets the whole message.
    const out = t.send(0, ATTACKER, {
      type: 'keepalive',
      requestId: 3,
      session: 'x'.repeat(40),
      token: new Uint8Array(16),
      lobbyVersion: 0,
    });
    const r = t.reply(out, 3);
    assert.ok(r?.type === 'error' && r.message === 'No such session.');
  });

  it("a member's new address gets a fresh token first; the member moves when it comes back", () => {
    const t = hostAndJoin();
    const MOVED: Endpoint = { address: JOINER.address, port: 2999 };
    const out = t.keepalive(5, MOVED, t.joinToken, 60);
    assert.equal(out.length, 1);
    const fresh = t.reply(out, 60);
    assert.ok(fresh?.type === 'registered');
    if (fresh?.type !== 'registered') return;
    assert.deepEqual(fresh.observed, MOVED);
    assert.notDeepEqual(fresh.token, t.joinToken);
    // Until then the member stays where it was, with its old token.
    const stay = t.reply(t.keepalive(6, JOINER, t.joinToken, 61), 61);
    assert.equal(stay?.type, 'lobby');
    // The fresh token from anywhere but the address it was sent to is refused.
    const elsewhere = t.reply(t.keepalive(7, ATTACKER, fresh.token, 62), 62);
    assert.ok(elsewhere?.type === 'error' && elsewhere.code === 'not_authorized');
    assert.equal(t.reply(t.keepalive(8, MOVED, fresh.token, 63), 63)?.type, 'lobby');
    const start = t.send(10, HOST, {
      type: 'start',
      requestId: 65,
      session: 'game',
      token: t.hostToken,
    });
    const peers = start.find((o) => o.msg.type === 'peers' && o.to.port === MOVED.port)?.msg;
    assert.ok(peers?.type === 'peers', 'pushes follow the member to its new address');
    const toHost = start.find((o) => o.msg.type === 'peers' && o.to === HOST)?.msg;
    if (toHost?.type === 'peers') assert.deepEqual(toHost.peers[0]?.publicEndpoint, MOVED);
    // The old token is no longer the member's.
    const old = t.reply(t.keepalive(11, JOINER, t.joinToken, 66), 66);
    assert.ok(old?.type === 'error' && old.code === 'not_authorized');
  });

  describe('relay', () => {
    /** Host and joiner of a started session, each able to ask for a relay allocation. */
    function relayed(relay = true) {
      const t = hostAndJoin(false, relay);
      t.send(3, HOST, { type: 'start', requestId: 70, session: 'game', token: t.hostToken });
      const allocate = (now: number, from: Endpoint, token: Uint8Array, peer: string, id: number) =>
        t.reply(
          t.send(now, from, {
            type: 'relay_allocate',
            requestId: id,
            session: 'game',
            token,
            peer,
          }),
          id,
        );
      /** A datagram arriving on relay `port`; returns what the relay sent. */
      const onRelay = (now: number, port: number, from: Endpoint, data: Uint8Array) => {
        t.relaySent.length = 0;
        t.server.relay?.handle(now, port, from, data);
        return [...t.relaySent];
      };
      const bind = (now: number, from: Endpoint, g: V2Message | undefined) => {
        if (g?.type !== 'relay_granted') throw new Error(`not granted: ${g?.type}`);
        const bytes = encodeV2({
          type: 'relay_bind',
          requestId: 5,
          id: g.id,
          proof: g.bindToken,
        });
        return onRelay(now, g.port, from, bytes);
      };
      return { ...t, allocate, onRelay, bind };
    }
    const raw = (text: string) => new TextEncoder().encode(text);

    it('grants both sides one port with their own id and secret, and forwards raw datagrams once both bound', () => {
      const t = relayed();
      const a = t.allocate(4, HOST, t.hostToken, 'bob', 71);
      const b = t.allocate(5, JOINER, t.joinToken, 'alice', 72);
      if (a?.type !== 'relay_granted' || b?.type !== 'relay_granted') throw new Error('no grant');
      assert.equal(a.peer, 'bob');
      assert.equal(a.port, b.port, 'one port per pair');
      assert.notDeepEqual(a.id, b.id);
      assert.notDeepEqual(a.bindToken, b.bindToken);
      const again = t.allocate(6, HOST, t.hostToken, 'bob', 73);
      assert.deepEqual(again, { ...a, requestId: 73 }, 'asking again repeats the grant');
      // The NAT may map the game socket to another port towards the relay: the bind says which.
      const hostOnRelay = { address: HOST.address, port: 51_111 };
      const bound = t.bind(7, hostOnRelay, a);
      assert.equal(bound.length, 1);
      assert.deepEqual(bound[0]?.to, hostOnRelay);
      assert.equal(bound[0]?.port, a.port, 'acknowledged from the relay port');
      assert.ok(bound[0] && bound[0].data.length <= 33, 'no larger than the bind');
      // Bob has not bound: nothing goes anywhere.
      assert.deepEqual(t.onRelay(8, a.port, hostOnRelay, raw('early')), []);
      assert.equal(t.counters.rejections.relay_peer_unbound, 1);
      t.bind(9, JOINER, b);
      const game = raw('ENet or anything, unchanged');
      const out = t.onRelay(10, a.port, hostOnRelay, game);
      assert.deepEqual(out, [{ port: a.port, to: JOINER, data: game }], 'one out, same bytes');
      const back = t.onRelay(11, a.port, JOINER, raw('hi'));
      assert.deepEqual(
        back.map((o) => o.to),
        [hostOnRelay],
      );
      assert.equal(t.counters.datagramsRelayed, 2);
      assert.equal(t.counters.relayBytes, game.length + 2);
    });

    it('drops datagrams from unbound sources and binds with a wrong secret; refuses bad asks', () => {
      const t = relayed();
      const a = t.allocate(4, HOST, t.hostToken, 'bob', 71);
      const b = t.allocate(4, JOINER, t.joinToken, 'alice', 72);
      if (a?.type !== 'relay_granted' || b?.type !== 'relay_granted') throw new Error('no grant');
      t.bind(5, HOST, a);
      t.bind(5, JOINER, b);
      assert.deepEqual(t.onRelay(6, a.port, ATTACKER, raw('spoofed')), []);
      const forged = encodeV2({
        type: 'relay_bind',
        requestId: 1,
        id: a.id,
        proof: new Uint8Array(16),
      });
      assert.deepEqual(t.onRelay(6, a.port, ATTACKER, forged), []);
      assert.equal(t.counters.rejections.relay_unbound_source, 1);
      assert.equal(t.counters.rejections.relay_bad_bind, 1);
      assert.equal(t.onRelay(7, a.port, HOST, raw('still mine'))[0]?.to, JOINER);
      const noPeer = t.allocate(8, HOST, t.hostToken, 'nobody', 74);
      assert.ok(noPeer?.type === 'error' && noPeer.code === 'bad_request');
      const self = t.allocate(8, HOST, t.hostToken, 'alice', 75);
      assert.ok(self?.type === 'error' && self.code === 'bad_request', 'not to oneself');
      const elsewhere = t.allocate(8, ATTACKER, t.hostToken, 'bob', 76);
      assert.ok(elsewhere?.type === 'error' && elsewhere.code === 'not_authorized');
      const wrong = t.allocate(8, HOST, new Uint8Array(16), 'bob', 77);
      assert.ok(wrong?.type === 'error' && wrong.code === 'not_authorized');
    });

    it('is refused before the start and on a server that does not relay', () => {
      const waiting = hostAndJoin();
      const early = waiting.reply(
        waiting.send(3, HOST, {
          type: 'relay_allocate',
          requestId: 80,
          session: 'game',
          token: waiting.hostToken,
          peer: 'bob',
        }),
        80,
      );
      assert.ok(early?.type === 'error' && early.code === 'not_authorized');
      const off = relayed(false);
      const refused = off.allocate(4, HOST, off.hostToken, 'bob', 81);
      assert.ok(refused?.type === 'error' && refused.code === 'relay_unavailable');
    });

    it('a game re-hosted under the same session and member names gets its own allocation and cannot touch the old one', () => {
      const t = relayed();
      const a = t.allocate(4, HOST, t.hostToken, 'bob', 71);
      const b = t.allocate(4, JOINER, t.joinToken, 'alice', 72);
      if (a?.type !== 'relay_granted' || b?.type !== 'relay_granted') throw new Error('no grant');
      t.bind(5, HOST, a);
      t.bind(5, JOINER, b);
      t.send(6, HOST, { type: 'peers_ack', requestId: 90, session: 'game', token: t.hostToken });
      t.send(6, JOINER, { type: 'peers_ack', requestId: 91, session: 'game', token: t.joinToken });
      assert.equal(t.server.sessionCount, 0, 'forgotten: the name is free');
      // The attacker re-hosts "game" with the same member names, from its own addresses.
      const EVE2: Endpoint = { address: '203.0.113.67', port: 7777 };
      const h = t.reply(
        t.send(7, ATTACKER, {
          type: 'host',
          requestId: 1,
          session: 'game',
          maxPlayers: 2,
          name: 'alice',
          nickname: '',
          candidates: [],
        }),
        1,
      );
      if (h?.type !== 'registered') throw new Error('not hosted');
      t.keepalive(7, ATTACKER, h.token, 2);
      const j = t.reply(
        t.send(8, EVE2, {
          type: 'join',
          requestId: 3,
          session: 'game',
          name: 'bob',
          nickname: '',
          candidates: [],
        }),
        3,
      );
      if (j?.type !== 'registered') throw new Error('not joined');
      t.keepalive(8, EVE2, j.token, 4);
      t.send(9, ATTACKER, { type: 'start', requestId: 5, session: 'game', token: h.token });
      const evil = t.allocate(10, ATTACKER, h.token, 'bob', 6);
      if (evil?.type !== 'relay_granted') throw new Error(`not granted: ${evil?.type}`);
      assert.notEqual(evil.port, a.port, 'a new allocation, not the old pair of names');
      // Its id and secret do not bind on the old port, and the old pair still talks.
      const tried = encodeV2({
        type: 'relay_bind',
        requestId: 1,
        id: evil.id,
        proof: evil.bindToken,
      });
      assert.deepEqual(t.onRelay(11, a.port, ATTACKER, tried), []);
      assert.deepEqual(
        t.onRelay(12, a.port, HOST, raw('ours')).map((o) => o.to),
        [JOINER],
      );
      // Its own leave closes its own allocation, not the old game's.
      t.send(13, ATTACKER, { type: 'leave', requestId: 7, session: 'game', token: h.token });
      assert.deepEqual(
        t.onRelay(14, a.port, JOINER, raw('still ours')).map((o) => o.to),
        [HOST],
      );
    });

    it("a member's leave closes its allocations (also after the session was forgotten), and so does the session's end", () => {
      const t = relayed();
      const a = t.allocate(4, HOST, t.hostToken, 'bob', 71);
      const b = t.allocate(4, JOINER, t.joinToken, 'alice', 72);
      if (a?.type !== 'relay_granted' || b?.type !== 'relay_granted') throw new Error('no grant');
      t.bind(5, HOST, a);
      t.bind(5, JOINER, b);
      // A leave from another address with the token does nothing to the relay.
      t.send(6, HOST, { type: 'peers_ack', requestId: 90, session: 'game', token: t.hostToken });
      t.send(6, JOINER, { type: 'peers_ack', requestId: 91, session: 'game', token: t.joinToken });
      t.send(7, ATTACKER, { type: 'leave', requestId: 92, session: 'game', token: t.joinToken });
      assert.equal(t.server.relay?.size, 1);
      t.send(8, JOINER, { type: 'leave', requestId: 93, session: 'game', token: t.joinToken });
      assert.equal(t.server.relay?.size, 0, "bob's leave closed the pair");
      assert.deepEqual(t.closedPorts, [a.port]);
      assert.deepEqual(t.onRelay(9, a.port, HOST, raw('gone')), []);
      // In a live started session too.
      const live = relayed();
      const c = live.allocate(4, HOST, live.hostToken, 'bob', 71);
      if (c?.type !== 'relay_granted') throw new Error('no grant');
      live.send(5, JOINER, {
        type: 'leave',
        requestId: 94,
        session: 'game',
        token: live.joinToken,
      });
      assert.equal(live.server.relay?.size, 0);
    });

    it('closes an allocation after RELAY_IDLE_MS without traffic, and keeps a busy one', () => {
      const t = relayed();
      const a = t.allocate(4, HOST, t.hostToken, 'bob', 71);
      const b = t.allocate(4, JOINER, t.joinToken, 'alice', 72);
      if (a?.type !== 'relay_granted' || b?.type !== 'relay_granted') throw new Error('no grant');
      t.bind(5, HOST, a);
      t.bind(5, JOINER, b);
      for (let now = 10_000; now <= 100_000; now += 10_000) {
        t.server.handleTimeout(now);
        assert.equal(t.onRelay(now, a.port, HOST, raw('tick')).length, 1);
      }
      let now = 100_000;
      for (let i = 0; i < 10 && Number.isFinite(t.server.nextDeadline()); i++) {
        now = Math.max(now, t.server.nextDeadline());
        t.server.handleTimeout(now);
      }
      assert.ok(now >= 100_000 + RELAY_IDLE_MS, `swept at ${now}`);
      assert.deepEqual(t.onRelay(now + 1, a.port, HOST, raw('too late')), []);
      assert.equal(Number.isFinite(t.server.nextDeadline()), false, 'nothing left to wake for');
    });

    it('members may ask for RELAY_ASK_WINDOW_MS after the start, even once the name is reused', () => {
      const t = relayed();
      t.send(4, HOST, { type: 'peers_ack', requestId: 90, session: 'game', token: t.hostToken });
      t.send(4, JOINER, { type: 'peers_ack', requestId: 91, session: 'game', token: t.joinToken });
      assert.equal(t.server.sessionCount, 0);
      const rehosted = t.reply(
        t.send(5, ATTACKER, {
          type: 'host',
          requestId: 92,
          session: 'game',
          maxPlayers: 2,
          name: 'carol',
          nickname: '',
          candidates: [],
        }),
        92,
      );
      assert.equal(rehosted?.type, 'registered');
      assert.equal(t.allocate(8_000, HOST, t.hostToken, 'bob', 93)?.type, 'relay_granted');
      // The window counts from the start (t = 3 in `relayed`).
      t.server.handleTimeout(3 + RELAY_ASK_WINDOW_MS);
      const late = t.allocate(3 + RELAY_ASK_WINDOW_MS, JOINER, t.joinToken, 'alice', 94);
      assert.ok(late?.type === 'error' && late.code === 'not_authorized');
    });
  });

  describe('liveness', () => {
    const CAROL: Endpoint = { address: '198.51.100.3', port: 3333 };
    /** host + bob + carol, all validated at 2, waiting (no autostart, 4 seats). */
    function trio() {
      const t = setup({ autostart: false, ttl: 600_000 });
      const reg = (from: Endpoint, msg: Parameters<typeof encodeV2>[0]) => {
        const r = t.reply(t.send(0, from, msg), msg.requestId);
        if (r?.type !== 'registered') throw new Error(`not registered: ${r?.type}`);
        t.keepalive(2, from, r.token);
        return r.token;
      };
      const base = { session: 'game', candidates: [] };
      const host = reg(HOST, {
        type: 'host',
        requestId: 1,
        maxPlayers: 4,
        name: 'alice',
        nickname: 'Alice',
        ...base,
      });
      const bob = reg(JOINER, {
        type: 'join',
        requestId: 2,
        name: 'bob',
        nickname: 'Bob',
        ...base,
      });
      const carol = reg(CAROL, {
        type: 'join',
        requestId: 3,
        name: 'carol',
        nickname: 'Carol',
        ...base,
      });
      /** Runs the timers to `until`; everyone in `alive` sends a keepalive every 5 s. */
      const run = (from: number, until: number, alive: [Endpoint, Uint8Array][]) => {
        const out: { now: number; to: Endpoint; msg: V2Message }[] = [];
        for (let now = from; now <= until; now += 500) {
          t.sent.length = 0;
          t.server.handleTimeout(now);
          for (const o of t.sent) out.push({ now, ...o });
          if (now % 5000 === 0) for (const [ep, token] of alive) t.keepalive(now, ep, token, now);
        }
        return out;
      };
      return { ...t, host, bob, carol, run };
    }

    it('drops a member whose keepalives stop after MEMBER_SILENCE_MS and tells the others', () => {
      const t = trio();
      // carol crashed at 2 (kill -9): host and bob keep alive.
      const out = t.run(500, 2 + MEMBER_SILENCE_MS + 1000, [
        [HOST, t.host],
        [JOINER, t.bob],
      ]);
      const lobbies = out.filter((o) => o.msg.type === 'lobby' && o.msg.requestId === 0);
      assert.equal(lobbies.length, 2, 'one push each to host and bob');
      for (const l of lobbies) {
        assert.ok(l.msg.type === 'lobby');
        if (l.msg.type === 'lobby') assert.deepEqual(l.msg.nicknames, ['Alice', 'Bob']);
        assert.ok(l.now >= 2 + MEMBER_SILENCE_MS && l.now < 2 + MEMBER_SILENCE_MS + 1000);
        assert.ok(!(l.to.port === CAROL.port), 'not pushed to the dropped member');
      }
      assert.equal(t.counters.rejections.v2_silent_member, 1);
      // Its token is void: a late keepalive is refused, and its seat is free again.
      const late = t.keepalive(20_000, CAROL, t.carol, 99);
      assert.equal(t.reply(late, 99)?.type, 'error');
      assert.equal(t.server.sessionCount, 1, 'the lobby itself lives on');
    });

    it('a member that keeps sending keepalives is never dropped', () => {
      const t = trio();
      const out = t.run(500, 60_000, [
        [HOST, t.host],
        [JOINER, t.bob],
        [{ address: '198.51.100.3', port: 3333 }, t.carol],
      ]);
      assert.equal(out.filter((o) => o.msg.requestId === 0).length, 0, 'no lobby change');
      assert.equal(t.counters.rejections.v2_silent_member, undefined);
    });

    it('a silent host closes the lobby with host_left, and the name is free at once', () => {
      const t = trio();
      const out = t.run(500, 2 + MEMBER_SILENCE_MS + 500, [
        [JOINER, t.bob],
        [{ address: '198.51.100.3', port: 3333 }, t.carol],
      ]);
      const closed = out.filter((o) => o.msg.type === 'closed');
      assert.deepEqual(
        closed.map((o) => [o.to.port, o.msg.type === 'closed' && o.msg.code]),
        [
          [JOINER.port, 'host_left'],
          [3333, 'host_left'],
        ],
      );
      assert.equal(t.server.sessionCount, 0);
      // The same command run again (new socket, new port) hosts the same name right away.
      const again = t.send(
        2 + MEMBER_SILENCE_MS,
        { address: HOST.address, port: 1112 },
        {
          type: 'host',
          requestId: 5,
          session: 'game',
          maxPlayers: 4,
          name: 'alice',
          nickname: 'Alice',
          candidates: [],
        },
      );
      assert.equal(t.reply(again, 5)?.type, 'registered');
    });

    it("the host's leave closes the lobby for the others with host_left", () => {
      const t = trio();
      const out = t.send(3, HOST, { type: 'leave', requestId: 8, session: 'game', token: t.host });
      assert.equal(t.reply(out, 8)?.type, 'ok');
      const codes = out
        .filter((o) => o.msg.type === 'closed')
        .map((o) => o.msg.type === 'closed' && o.msg.code);
      assert.deepEqual(codes, ['host_left', 'host_left']);
      assert.equal(t.server.sessionCount, 0);
    });

    it('after the start a leaving member is reported to the others as left, at once', () => {
      const t = trio();
      t.send(3, HOST, { type: 'start', requestId: 9, session: 'game', token: t.host });
      t.send(4, HOST, { type: 'peers_ack', requestId: 10, session: 'game', token: t.host });
      const out = t.send(5, JOINER, {
        type: 'leave',
        requestId: 11,
        session: 'game',
        token: t.bob,
      });
      assert.equal(t.reply(out, 11)?.type, 'ok');
      const told = out.filter((o) => o.msg.type === 'peer_left');
      assert.deepEqual(
        told.map((o) => [o.to.port, o.msg.type === 'peer_left' && `${o.msg.name} ${o.msg.why}`]),
        [
          [HOST.port, 'bob left'],
          [3333, 'bob left'],
        ],
      );
      // carol acks: every remaining member did, so the session is forgotten, nothing more.
      t.send(
        6,
        { address: '198.51.100.3', port: 3333 },
        { type: 'peers_ack', requestId: 12, session: 'game', token: t.carol },
      );
      assert.equal(t.server.sessionCount, 0);
    });

    it('after the start a member that never acks its peers is reported silent once, after PEERS_ACK_WITHIN_MS', () => {
      const t = trio();
      t.send(3, HOST, { type: 'start', requestId: 9, session: 'game', token: t.host });
      t.send(4, HOST, { type: 'peers_ack', requestId: 10, session: 'game', token: t.host });
      t.send(4, JOINER, { type: 'peers_ack', requestId: 11, session: 'game', token: t.bob });
      const out = t.run(4, 3 + PEERS_ACK_WITHIN_MS + 5000, []);
      const told = out.filter((o) => o.msg.type === 'peer_left');
      assert.deepEqual(
        told.map((o) => [o.to.port, o.msg.type === 'peer_left' && `${o.msg.name} ${o.msg.why}`]),
        [
          [HOST.port, 'carol silent'],
          [JOINER.port, 'carol silent'],
        ],
      );
      for (const o of told)
        assert.ok(o.now >= 3 + PEERS_ACK_WITHIN_MS && o.now < 3 + PEERS_ACK_WITHIN_MS + 500);
    });
  });
});
