import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { createCounters } from '../src/server/counters.js';
import { LegacySessions, SESSION_TTL_MS } from '../src/server/legacy-sessions.js';
import type { SessionLifecycleEvent } from '../src/server/lifecycle.js';

interface Sent {
  readonly to: string;
  readonly text: string;
}

const HOST: Endpoint = { address: '198.51.100.1', port: 4000 };
const BOB: Endpoint = { address: '203.0.113.2', port: 51000 };
const CAROL: Endpoint = { address: '203.0.113.3', port: 52000 };
const DAVE: Endpoint = { address: '203.0.113.4', port: 53000 };
const MALLORY: Endpoint = { address: '203.0.113.66', port: 6666 };

const at = (ep: Endpoint): string => `${ep.address}:${ep.port}`;

/** A session table on a fake clock whose replies land in `sent`. */
function harness(options: { autostart?: boolean; ttlMs?: number; maxSessions?: number } = {}) {
  const sent: Sent[] = [];
  const events: SessionLifecycleEvent[] = [];
  const counters = createCounters();
  let now = 1_000;
  const sessions = new LegacySessions({
    outbox: {
      send(to, data) {
        sent.push({ to: at(to), text: new TextDecoder().decode(data) });
      },
    },
    counters,
    autostart: options.autostart ?? true,
    sessionTtlMs: options.ttlMs ?? SESSION_TTL_MS,
    maxSessions: options.maxSessions ?? 100,
    onLifecycle: (event) => events.push(event),
  });
  return {
    sessions,
    counters,
    events,
    sent,
    /** Feeds one datagram and returns the replies it caused. */
    send(from: Endpoint, message: string): Sent[] {
      const before = sent.length;
      sessions.handle(now, from, new TextEncoder().encode(message));
      return sent.slice(before);
    },
    advance(ms: number): Sent[] {
      now += ms;
      const before = sent.length;
      if (sessions.nextDeadline() <= now) sessions.handleTimeout(now);
      return sent.slice(before);
    },
    get now() {
      return now;
    },
  };
}

const reply = (to: Endpoint, text: string): Sent => ({ to: at(to), text });

/** A host registers session `k` (MAX `max`) and joins it as `h`/`Host`. */
function hostSession(h: ReturnType<typeof harness>, max: number, key = 'k'): void {
  assert.deepEqual(h.send(HOST, `rs:${key}:${max}`), [reply(HOST, 'ok:4000')]);
  assert.deepEqual(h.send(HOST, `rc:h:${key}:Host`), [
    reply(HOST, 'ok:4000'),
    reply(HOST, `lobby:Host:${max}`),
  ]);
}

describe('legacy sessions: a full lobby', () => {
  test('rs answers ok:PORT with the observed source port and creates the session', () => {
    const h = harness();
    assert.deepEqual(h.send(HOST, 'rs:k:3'), [reply(HOST, 'ok:4000')]);
    assert.equal(h.sessions.sessionCount, 1);
    assert.equal(h.counters.sessionsCreated, 1);
    assert.deepEqual(
      h.events.map((e) => [e.type, e.key]),
      [['created', 'k']],
    );
  });

  test('each rc gets ok:PORT, then every member gets the new lobby in join order', () => {
    const h = harness();
    hostSession(h, 3);
    assert.deepEqual(h.send(BOB, 'rc:b:k:Bob'), [
      reply(BOB, 'ok:51000'),
      reply(HOST, 'lobby:Host,Bob:3'),
      reply(BOB, 'lobby:Host,Bob:3'),
    ]);
  });

  test('with autostart, the member that fills the session makes everyone get peers: at once, then the session is gone', () => {
    const h = harness();
    hostSession(h, 3);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(CAROL, 'rc:c:k:Carol'), [
      reply(CAROL, 'ok:52000'),
      reply(HOST, 'lobby:Host,Bob,Carol:3'),
      reply(BOB, 'lobby:Host,Bob,Carol:3'),
      reply(CAROL, 'lobby:Host,Bob,Carol:3'),
      reply(HOST, 'peers:b:203.0.113.2:51000:False,c:203.0.113.3:52000:False'),
      reply(BOB, 'peers:h:198.51.100.1:4000:True,c:203.0.113.3:52000:False'),
      reply(CAROL, 'peers:h:198.51.100.1:4000:True,b:203.0.113.2:51000:False'),
    ]);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsStarted, 1);
    assert.deepEqual(h.events.at(-1), {
      type: 'started',
      protocol: 'legacy',
      key: 'k',
      maxPlayers: 3,
      members: 3,
      reason: 'autostart',
    });
    // The KEY is free again; a late joiner hears that the session does not exist.
    assert.deepEqual(h.send(DAVE, 'rc:d:k:Dave'), [
      reply(DAVE, 'close:Client registered for non-existing session'),
    ]);
  });

  test('without autostart a full session waits for the host ep:KEY', () => {
    const h = harness({ autostart: false });
    hostSession(h, 2);
    const joined = h.send(BOB, 'rc:b:k:Bob');
    assert.equal(
      joined.some((s) => s.text.startsWith('peers:')),
      false,
    );
    assert.equal(h.sessions.sessionCount, 1);
    assert.deepEqual(h.send(HOST, 'ep:k'), [
      reply(HOST, 'peers:b:203.0.113.2:51000:False'),
      reply(BOB, 'peers:h:198.51.100.1:4000:True'),
    ]);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.events.at(-1)?.reason, 'exchange_peers');
  });

  test('ep:KEY before the lobby is full starts the session with the members it has', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(HOST, 'ep:k'), [
      reply(HOST, 'peers:b:203.0.113.2:51000:False'),
      reply(BOB, 'peers:h:198.51.100.1:4000:True'),
    ]);
  });

  test('a host that never joins as a member is marked hosting for nobody', () => {
    const h = harness();
    h.send(HOST, 'rs:k:2');
    h.send(BOB, 'rc:b:k:Bob');
    const started = h.send(CAROL, 'rc:c:k:Carol').filter((s) => s.text.startsWith('peers:'));
    assert.deepEqual(started, [
      reply(BOB, 'peers:c:203.0.113.3:52000:False'),
      reply(CAROL, 'peers:b:203.0.113.2:51000:False'),
    ]);
  });

  test('goodbye after peers: is ignored without a reply or a rejection', () => {
    const h = harness();
    assert.deepEqual(h.send(BOB, 'goodbye'), []);
    assert.deepEqual(h.counters.rejections, {});
  });

  test('members reached through a dual-stack socket are listed in peers: as plain IPv4', () => {
    const h = harness();
    const host = { address: '::ffff:198.51.100.1', port: 4000 };
    const bob = { address: '::ffff:203.0.113.2', port: 51000 };
    h.send(host, 'rs:k:2');
    h.send(host, 'rc:h:k:Host');
    const replies = h.send(bob, 'rc:b:k:Bob');
    assert.deepEqual(replies.slice(-2), [
      { to: '::ffff:198.51.100.1:4000', text: 'peers:b:203.0.113.2:51000:False' },
      { to: '::ffff:203.0.113.2:51000', text: 'peers:h:198.51.100.1:4000:True' },
    ]);
  });
});

describe("legacy sessions: refusals with the original's close: reasons", () => {
  test('rs for an existing KEY from someone else: close:Tried to create existing session', () => {
    const h = harness();
    h.send(HOST, 'rs:k:2');
    assert.deepEqual(h.send(MALLORY, 'rs:k:2'), [
      reply(MALLORY, 'close:Tried to create existing session'),
    ]);
    assert.equal(h.counters.rejections.session_exists, 1);
  });

  test('a retransmitted rs from the host is answered ok again and changes nothing', () => {
    const h = harness();
    h.send(HOST, 'rs:k:2');
    assert.deepEqual(h.send(HOST, 'rs:k:2'), [reply(HOST, 'ok:4000')]);
    assert.equal(h.counters.sessionsCreated, 1);
    assert.deepEqual(h.send(HOST, 'rs:k:3'), [
      reply(HOST, 'close:Tried to create existing session'),
    ]);
  });

  test('rc for an unknown KEY: close:Client registered for non-existing session, no ok: first', () => {
    const h = harness();
    assert.deepEqual(h.send(BOB, 'rc:b:nope:Bob'), [
      reply(BOB, 'close:Client registered for non-existing session'),
    ]);
    assert.equal(h.counters.rejections.session_not_found, 1);
  });

  test('rc with a NAME another member uses: close:Client already registered', () => {
    const h = harness();
    hostSession(h, 4);
    assert.deepEqual(h.send(MALLORY, 'rc:h:k:Impostor'), [
      reply(MALLORY, 'close:Client already registered'),
    ]);
    assert.equal(h.sessions.describeSession('k')?.members.length, 1);
    assert.equal(h.counters.rejections.name_taken, 1);
  });

  test('rc into a full session (autostart off): close:Session full', () => {
    const h = harness({ autostart: false });
    hostSession(h, 2);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(CAROL, 'rc:c:k:Carol'), [reply(CAROL, 'close:Session full')]);
    assert.equal(h.counters.rejections.session_full, 1);
  });

  test('rs beyond --max-sessions: close:Too many sessions', () => {
    const h = harness({ maxSessions: 1 });
    h.send(HOST, 'rs:a:2');
    assert.deepEqual(h.send(BOB, 'rs:b:2'), [reply(BOB, 'close:Too many sessions')]);
    assert.equal(h.counters.rejections.too_many_sessions, 1);
  });

  test('a native IPv6 sender is refused: its address cannot be written in peers:', () => {
    const h = harness();
    const v6 = { address: '2001:db8::5', port: 4000 };
    assert.deepEqual(h.send(v6, 'rs:k:2'), [
      { to: '2001:db8::5:4000', text: 'close:IPv6 is not supported by the legacy protocol' },
    ]);
    h.send(HOST, 'rs:k:2');
    assert.deepEqual(h.send(v6, 'rc:x:k:X'), [
      { to: '2001:db8::5:4000', text: 'close:IPv6 is not supported by the legacy protocol' },
    ]);
    assert.equal(h.counters.rejections.ipv6_unsupported, 2);
  });

  test('malformed datagrams get no reply and are counted by kind', () => {
    const h = harness();
    assert.deepEqual(h.send(BOB, 'rs:k:0'), []);
    assert.deepEqual(h.send(BOB, 'zz'), []);
    assert.deepEqual(h.send(BOB, 'rc:a,b:k:n'), []);
    assert.deepEqual(h.counters.rejections, { bad_max: 1, unknown_type: 1, bad_name: 1 });
  });
});

describe('legacy sessions: only the right address may act', () => {
  test('cs from the host closes the session and every member gets close:REASON', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(HOST, 'cs:k:Host quit'), [
      reply(HOST, 'close:Host quit'),
      reply(BOB, 'close:Host quit'),
    ]);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsClosed, 1);
    assert.deepEqual(h.events.at(-1)?.type, 'closed');
  });

  test('cs:KEY without a reason tells members close:Session closed.', () => {
    const h = harness();
    hostSession(h, 4);
    assert.deepEqual(h.send(HOST, 'cs:k'), [reply(HOST, 'close:Session closed.')]);
  });

  test('cs from a member who is not the host does not close the session', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(BOB, 'cs:k:mutiny'), []);
    assert.equal(h.sessions.sessionCount, 1);
    assert.equal(h.counters.rejections.not_host, 1);
  });

  test("cs from the host's IP but another port does not close the session", () => {
    const h = harness();
    hostSession(h, 4);
    assert.deepEqual(h.send({ address: HOST.address, port: 4001 }, 'cs:k:x'), []);
    assert.equal(h.sessions.sessionCount, 1);
  });

  test('ep from a non-host does not start the session', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(BOB, 'ep:k'), []);
    assert.equal(h.sessions.sessionCount, 1);
    assert.equal(h.counters.rejections.not_host, 1);
  });

  test('cs and ep for an unknown KEY are dropped and counted', () => {
    const h = harness();
    assert.deepEqual(h.send(HOST, 'cs:nope:x'), []);
    assert.deepEqual(h.send(HOST, 'ep:nope'), []);
    assert.equal(h.counters.rejections.session_not_found, 2);
  });

  test('cc from the address that registered NAME checks it out; the rest see the new lobby', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(BOB, 'cc:b'), [reply(HOST, 'lobby:Host:4')]);
    assert.deepEqual(
      h.sessions.describeSession('k')?.members.map((m) => m.name),
      ['h'],
    );
  });

  test('a spoofed cc:NAME from another address does not remove the member', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(MALLORY, 'cc:b'), []);
    assert.deepEqual(h.send({ address: BOB.address, port: BOB.port + 1 }, 'cc:b'), []);
    assert.deepEqual(
      h.sessions.describeSession('k')?.members.map((m) => m.name),
      ['h', 'b'],
    );
    assert.equal(h.counters.rejections.not_owner, 2);
  });

  test('cc only touches the session the address registered NAME in, not a same-named member elsewhere', () => {
    const h = harness();
    h.send(HOST, 'rs:one:4');
    h.send(HOST, 'rs:two:4');
    h.send(BOB, 'rc:p:one:Bob');
    h.send(CAROL, 'rc:p:two:Carol');
    h.send(BOB, 'cc:p');
    assert.equal(h.sessions.describeSession('one')?.members.length, 0);
    assert.deepEqual(
      h.sessions.describeSession('two')?.members.map((m) => m.nickname),
      ['Carol'],
    );
  });
});

describe('legacy sessions: re-registration', () => {
  test('a retransmitted rc gets the same replies again and adds no duplicate member', () => {
    const h = harness();
    hostSession(h, 4);
    const first = h.send(BOB, 'rc:b:k:Bob');
    const second = h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(second, first);
    assert.equal(h.sessions.describeSession('k')?.members.length, 2);
  });

  test('a retransmitted rc into a full session (autostart off) is answered, not refused', () => {
    const h = harness({ autostart: false });
    hostSession(h, 2);
    const first = h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(BOB, 'rc:b:k:Bob'), first);
  });

  test('re-registering from the same address with a new nickname replaces it in place', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    h.send(CAROL, 'rc:c:k:Carol');
    assert.deepEqual(h.send(BOB, 'rc:b:k:Robert').slice(1, 2), [
      reply(HOST, 'lobby:Host,Robert,Carol:4'),
    ]);
  });

  test('the same NAME may be used in two sessions by different clients', () => {
    const h = harness();
    h.send(HOST, 'rs:one:4');
    h.send(MALLORY, 'rs:two:4');
    assert.equal(h.send(BOB, 'rc:p:one:Bob')[0]?.text, 'ok:51000');
    assert.equal(h.send(CAROL, 'rc:p:two:Carol')[0]?.text, 'ok:52000');
  });

  test('an address that registers in another session leaves the first one, whose members are told', () => {
    const h = harness();
    h.send(HOST, 'rs:one:4');
    h.send(HOST, 'rc:h:one:Host');
    h.send(MALLORY, 'rs:two:4');
    h.send(BOB, 'rc:b:one:Bob');
    const moved = h.send(BOB, 'rc:b:two:Bob');
    assert.deepEqual(moved, [
      reply(HOST, 'lobby:Host:4'),
      reply(BOB, 'ok:51000'),
      reply(BOB, 'lobby:Bob:4'),
    ]);
  });
});

describe('legacy sessions: expiry on a fake clock', () => {
  test('a session expires TTL after rs; its members get close:Session closed.', () => {
    const h = harness({ ttlMs: 10_000 });
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.equal(h.sessions.nextDeadline(), h.now + 10_000);
    assert.deepEqual(h.advance(9_999), []);
    assert.equal(h.sessions.sessionCount, 1);
    assert.deepEqual(h.advance(1), [
      reply(HOST, 'close:Session closed.'),
      reply(BOB, 'close:Session closed.'),
    ]);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsExpired, 1);
    assert.equal(h.sessions.nextDeadline(), Number.POSITIVE_INFINITY);
    assert.deepEqual(h.events.at(-1), {
      type: 'expired',
      protocol: 'legacy',
      key: 'k',
      maxPlayers: 4,
      members: 2,
      reason: 'Session closed.',
    });
  });

  test('the default TTL is 600 s', () => {
    const h = harness();
    h.send(HOST, 'rs:k:2');
    assert.equal(h.sessions.nextDeadline(), h.now + 600_000);
  });

  test('a session that started or closed earlier is not expired later, nor is a new one with its KEY', () => {
    const h = harness({ ttlMs: 10_000 });
    hostSession(h, 2);
    h.send(BOB, 'rc:b:k:Bob'); // autostarts
    h.advance(5_000);
    h.send(HOST, 'rs:k:2'); // same KEY, a new session with a later deadline
    assert.deepEqual(h.advance(5_000), []);
    assert.equal(h.sessions.sessionCount, 1);
    assert.equal(h.sessions.nextDeadline(), h.now + 5_000);
    assert.equal(h.advance(5_000).length, 0); // no members, but it is gone
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsExpired, 1);
  });

  test('sessions expire in creation order, each at its own deadline', () => {
    const h = harness({ ttlMs: 1_000 });
    for (let i = 0; i < 5; i++) {
      h.send({ address: '198.51.100.9', port: 1000 + i }, `rs:s${i}:2`);
      h.advance(100);
    }
    h.advance(850); // now = 2350: s0..s3 (deadlines 2000..2300) are due, s4 (2400) is not
    assert.deepEqual(
      h.sessions.describeSessions().map((s) => s.key),
      ['s4'],
    );
  });

  test('thousands of sessions expire in one pass and the queue is emptied', () => {
    const h = harness({ ttlMs: 1_000, maxSessions: 10_000 });
    for (let i = 0; i < 5_000; i++) {
      h.send({ address: '198.51.100.9', port: 1 + (i % 60_000) }, `rs:s${i}:2`);
    }
    h.advance(1_000);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsExpired, 5_000);
    assert.equal(h.sessions.nextDeadline(), Number.POSITIVE_INFINITY);
  });
});

describe('legacy sessions: churn does not pile up', () => {
  test('20,000 members sharing two NAMEs across 10,000 sessions register and check out quickly (one map lookup each, no scan)', () => {
    const h = harness({ maxSessions: 20_000 });
    const enc = new TextEncoder();
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) {
      const host = { address: `10.1.${i >> 8}.${i & 255}`, port: 4000 };
      const guest = { address: `10.2.${i >> 8}.${i & 255}`, port: 4000 };
      h.sessions.handle(h.now, host, enc.encode(`rs:s${i}:4`));
      h.sessions.handle(h.now, host, enc.encode(`rc:host:s${i}:Host`));
      h.sessions.handle(h.now, guest, enc.encode(`rc:guest:s${i}:Guest`));
    }
    for (let i = 0; i < 10_000; i++) {
      h.sessions.handle(
        h.now,
        { address: `10.2.${i >> 8}.${i & 255}`, port: 4000 },
        enc.encode('cc:guest'),
      );
    }
    const elapsed = performance.now() - started;
    assert.deepEqual(h.counters.rejections, {});
    assert.equal(h.sessions.describeSession('s9999')?.members.length, 1);
    assert.equal(h.sessions.describeSession('s0')?.members[0]?.name, 'host');
    assert.ok(elapsed < 3_000, `took ${elapsed.toFixed(0)} ms`);
  });

  test('100,000 sessions that start at once leave a bounded expiry queue, and the live ones still expire', () => {
    const h = harness({ ttlMs: 600_000, maxSessions: 200_000 });
    h.send(HOST, 'rs:keeper:4');
    for (let i = 0; i < 100_000; i++) {
      const host = { address: '198.51.100.9', port: 1 + (i % 60_000) };
      h.sessions.handle(h.now, host, new TextEncoder().encode(`rs:s${i}:2`));
      h.sessions.handle(h.now, host, new TextEncoder().encode(`ep:s${i}`));
    }
    assert.equal(h.counters.sessionsStarted, 100_000);
    assert.equal(h.sessions.sessionCount, 1);
    assert.ok(h.sessions.expiryQueueLength < 3_000, `queue ${h.sessions.expiryQueueLength}`);
    h.advance(600_000);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsExpired, 1);
    assert.equal(h.sessions.expiryQueueLength, 0);
  });
});

describe('legacy sessions: shutdown', () => {
  test('every member of every session is told close:Server shutting down, then all is forgotten', () => {
    const h = harness();
    hostSession(h, 4, 'a');
    h.send(BOB, 'rs:b:4');
    h.send(BOB, 'rc:b:b:Bob');
    h.sent.length = 0;
    h.sessions.shutdown(h.now, 'Server shutting down');
    assert.deepEqual(h.sent, [
      reply(HOST, 'close:Server shutting down'),
      reply(BOB, 'close:Server shutting down'),
    ]);
    assert.equal(h.sessions.sessionCount, 0);
    assert.equal(h.counters.sessionsClosed, 2);
    assert.equal(h.sessions.nextDeadline(), Number.POSITIVE_INFINITY);
  });
});
