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
      // No full lobby first: the original sent it after peers:, to sockets already closed.
      reply(CAROL, 'ok:52000'),
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
      reply(DAVE, 'ok:53000'),
      reply(DAVE, "close:'Client registered for non-existing session'"),
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
      reply(MALLORY, 'ok:6666'),
      reply(MALLORY, "close:'Tried to create existing session'"),
    ]);
    assert.equal(h.counters.rejections.session_exists, 1);
  });

  test('a retransmitted rs from the host is answered ok again and changes nothing', () => {
    const h = harness();
    h.send(HOST, 'rs:k:2');
    assert.deepEqual(h.send(HOST, 'rs:k:2'), [reply(HOST, 'ok:4000')]);
    assert.equal(h.counters.sessionsCreated, 1);
    assert.deepEqual(h.send(HOST, 'rs:k:3'), [
      reply(HOST, 'ok:4000'),
      reply(HOST, "close:'Tried to create existing session'"),
    ]);
  });

  test('rc for an unknown KEY: ok: then close:Client registered for non-existing session, as the original', () => {
    const h = harness();
    assert.deepEqual(h.send(BOB, 'rc:b:nope:Bob'), [
      reply(BOB, 'ok:51000'),
      reply(BOB, "close:'Client registered for non-existing session'"),
    ]);
    assert.equal(h.counters.rejections.session_not_found, 1);
  });

  test('rc with a NAME another member uses: close:Client already registered', () => {
    const h = harness();
    hostSession(h, 4);
    assert.deepEqual(h.send(MALLORY, 'rc:h:k:Impostor'), [
      reply(MALLORY, 'ok:6666'),
      reply(MALLORY, "close:'Client already registered'"),
    ]);
    assert.equal(h.sessions.describeSession('k')?.members.length, 1);
    assert.equal(h.counters.rejections.name_taken, 1);
  });

  test('rc into a full session (autostart off): close:Session full', () => {
    const h = harness({ autostart: false });
    hostSession(h, 2);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(CAROL, 'rc:c:k:Carol'), [
      reply(CAROL, 'ok:52000'),
      reply(CAROL, "close:'Session full'"),
    ]);
    assert.equal(h.counters.rejections.session_full, 1);
  });

  test('rs beyond --max-sessions: close:Too many sessions', () => {
    const h = harness({ maxSessions: 1 });
    h.send(HOST, 'rs:a:2');
    assert.deepEqual(h.send(BOB, 'rs:b:2'), [
      reply(BOB, 'ok:51000'),
      reply(BOB, "close:'Too many sessions'"),
    ]);
    assert.equal(h.counters.rejections.too_many_sessions, 1);
  });

  test('a native IPv6 sender is refused: its address cannot be written in peers:', () => {
    const h = harness();
    const v6 = { address: '2001:db8::5', port: 4000 };
    assert.deepEqual(h.send(v6, 'rs:k:2'), [
      { to: '2001:db8::5:4000', text: "close:'IPv6 is not supported by the legacy protocol'" },
    ]);
    h.send(HOST, 'rs:k:2');
    assert.deepEqual(h.send(v6, 'rc:x:k:X'), [
      { to: '2001:db8::5:4000', text: "close:'IPv6 is not supported by the legacy protocol'" },
    ]);
    assert.equal(h.counters.rejections.ipv6_unsupported, 2);
  });

  test('malformed datagrams get no reply and are counted by kind', () => {
    const h = harness();
    assert.deepEqual(h.send(BOB, 'rs:k:0'), []);
    assert.deepEqual(h.send(BOB, 'zz'), []);
    assert.deepEqual(h.counters.rejections, { bad_max: 1, unknown_type: 1 });
  });

  test('a comma or an over-long name gets a close: line the player can show, never silence', () => {
    const h = harness();
    hostSession(h, 4);
    assert.deepEqual(h.send(BOB, 'rc:b:k:Smith, J'), [
      reply(BOB, 'ok:51000'),
      reply(BOB, "close:'Names and nicknames may not contain a comma'"),
    ]);
    assert.deepEqual(h.send(BOB, 'rc:b,1:k:Bob'), [
      reply(BOB, 'ok:51000'),
      reply(BOB, "close:'Names and nicknames may not contain a comma'"),
    ]);
    assert.deepEqual(h.send(BOB, `rc:b:k:${'n'.repeat(33)}`), [
      reply(BOB, 'ok:51000'),
      reply(BOB, "close:'Name or nickname too long'"),
    ]);
    assert.equal(h.counters.rejections.bad_name, 3);
    assert.equal(h.sessions.describeSession('k')?.members.length, 1);
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

  test("cs from the host's IP but another port closes it: the real plugin sends it from a second socket", () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send({ address: HOST.address, port: 50123 }, 'cs:k:x'), [
      reply(HOST, 'close:x'),
      reply(BOB, 'close:x'),
    ]);
    assert.equal(h.sessions.sessionCount, 0);
  });

  test('cs and ep from another IP are refused, whatever the port', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send({ address: '203.0.113.99', port: HOST.port }, 'cs:k:x'), []);
    assert.deepEqual(h.send({ address: '203.0.113.99', port: HOST.port }, 'ep:k'), []);
    assert.equal(h.counters.rejections.not_host, 2);
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
  test('a retransmitted rc is answered ok: alone: nothing that did not change is re-broadcast', () => {
    const h = harness();
    hostSession(h, 4);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(BOB, 'rc:b:k:Bob'), [reply(BOB, 'ok:51000')]);
    assert.equal(h.sessions.describeSession('k')?.members.length, 2);
  });

  test('a retransmitted rc into a full session (autostart off) is answered, not refused', () => {
    const h = harness({ autostart: false });
    hostSession(h, 2);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(BOB, 'rc:b:k:Bob'), [reply(BOB, 'ok:51000')]);
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
      reply(BOB, 'ok:51000'),
      reply(HOST, 'lobby:Host:4'),
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

describe('legacy sessions: the real plugins, as they send', () => {
  // The real plugin sends rs from one socket, then rc, ep and cs from a second one: same IP,
  // another port (seed PROTOCOL.md, "Client behaviour of the original").
  const HOST_RC: Endpoint = { address: HOST.address, port: 50123 };

  test('lobby revision, AUTOSTART n: the host registers and finalize_peers from its second socket', () => {
    const h = harness({ autostart: false });
    assert.deepEqual(h.send(HOST, 'rs:k:2'), [reply(HOST, 'ok:4000')]);
    assert.deepEqual(h.send(HOST_RC, 'rc:h:k:Host'), [
      reply(HOST_RC, 'ok:50123'),
      reply(HOST_RC, 'lobby:Host:2'),
    ]);
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send(HOST_RC, 'ep:k'), [
      reply(HOST_RC, 'peers:b:203.0.113.2:51000:False'),
      reply(BOB, 'peers:h:198.51.100.1:50123:True'),
    ]);
    assert.equal(h.counters.sessionsStarted, 1);
  });

  test('master revisions: rc:NAME:KEY registers, NAME is the nickname, and the lobby autostarts', () => {
    const h = harness();
    h.send({ address: HOST.address, port: 40001 }, 'rs:k:2');
    assert.deepEqual(h.send(HOST_RC, 'rc:h:k'), [
      reply(HOST_RC, 'ok:50123'),
      reply(HOST_RC, 'lobby:h:2'),
    ]);
    assert.deepEqual(h.send(BOB, 'rc:b:k'), [
      reply(BOB, 'ok:51000'),
      reply(HOST_RC, 'peers:b:203.0.113.2:51000:False'),
      reply(BOB, 'peers:h:198.51.100.1:50123:True'),
    ]);
  });

  test('a nickname typed with a colon is cut there and the player joins, as with the original', () => {
    const h = harness({ autostart: false });
    hostSession(h, 4);
    assert.deepEqual(h.send(BOB, 'rc:b:k:Bo:b'), [
      reply(BOB, 'ok:51000'),
      reply(HOST, 'lobby:Host,Bo:4'),
      reply(BOB, 'lobby:Host,Bo:4'),
    ]);
  });

  test("HOSTING marks one entry: the rs sender's own port if it registered from it, else the first from its IP", () => {
    const h = harness({ autostart: false });
    const lanMate: Endpoint = { address: HOST.address, port: 50200 };
    h.send(HOST, 'rs:k:4');
    h.send(lanMate, 'rc:m:k:Mate');
    h.send(HOST_RC, 'rc:h:k:Host');
    h.send(BOB, 'rc:b:k:Bob');
    const toBob = h.send(HOST_RC, 'ep:k').find((s) => s.to === at(BOB));
    // No member registered from the rs socket itself: the first from the host's IP hosts.
    assert.equal(toBob?.text, 'peers:m:198.51.100.1:50200:True,h:198.51.100.1:50123:False');

    const exact = harness({ autostart: false });
    exact.send(HOST, 'rs:k:4');
    exact.send(lanMate, 'rc:m:k:Mate');
    exact.send(HOST, 'rc:h:k:Host');
    exact.send(BOB, 'rc:b:k:Bob');
    const peers = exact.send(HOST, 'ep:k').find((s) => s.to === at(BOB));
    assert.equal(peers?.text, 'peers:m:198.51.100.1:50200:False,h:198.51.100.1:4000:True');
  });

  test('cc is still honoured only from the address that registered the name', () => {
    const h = harness();
    h.send(HOST, 'rs:k:4');
    h.send(HOST_RC, 'rc:h:k:Host');
    h.send(BOB, 'rc:b:k:Bob');
    assert.deepEqual(h.send({ address: BOB.address, port: 51001 }, 'cc:b'), []);
    assert.equal(h.counters.rejections.not_owner, 1);
    assert.deepEqual(h.send(BOB, 'cc:b'), [reply(HOST_RC, 'lobby:Host:4')]);
  });
});

describe('legacy sessions: what a forged datagram can make the server send is bounded', () => {
  test("a lobby: the session's received bytes cannot pay for waits, coalesced, for the next datagram", () => {
    const h = harness({ autostart: false });
    h.send(HOST, 'rs:k:16');
    const members = Array.from({ length: 16 }, (_, i) => ({
      address: `203.0.113.${i + 1}`,
      port: 5000,
    }));
    const nick = (i: number) => `${i}`.padEnd(32, 'x');
    members.forEach((m, i) => {
      h.send(m, `rc:${i}:k:${nick(i)}`);
    });
    // A real lobby filling up is always paid for: each member heard each join.
    assert.equal(h.sent.filter((s) => s.text.startsWith('lobby:')).length, (16 * 17) / 2);
    // Now leave and rejoin with tiny datagrams: each costs ~7.5 KB of lobby: to 15 addresses.
    let broadcasts = 0;
    let last: Sent[] = [];
    for (let round = 0; round < 20; round++) {
      last = h.send(members[5] as Endpoint, 'cc:5');
      broadcasts += last.length > 0 ? 1 : 0;
      last = h.send(members[5] as Endpoint, 'rc:5:k:z');
      broadcasts += last.some((s) => s.text.startsWith('lobby:')) ? 1 : 0;
    }
    assert.ok(broadcasts < 20, `${broadcasts} broadcasts for 40 tiny datagrams`);
    // The lobby everyone last heard is never older than the credit allows, and it is the
    // real one once the session is paid for again.
    for (let i = 0; i < 3; i++) h.send(members[6] as Endpoint, `rc:6:k:${nick(6)}`);
    const lobby = h.sent.findLast((s) => s.text.startsWith('lobby:'))?.text ?? '';
    assert.ok(lobby.endsWith(',z:16'), lobby);
  });

  test('a pending lobby: is dropped with its session, and never sent to the ended session', () => {
    const h = harness({ autostart: false });
    h.send(HOST, 'rs:k:16');
    const nick = 'n'.repeat(32);
    for (let i = 0; i < 16; i++)
      h.send({ address: `203.0.113.${i + 1}`, port: 1 }, `rc:${i}:k:${nick}`);
    for (let i = 0; i < 30; i++) {
      h.send({ address: '203.0.113.2', port: 1 }, 'cc:1');
      h.send({ address: '203.0.113.2', port: 1 }, 'rc:1:k:z');
    }
    h.send(HOST, 'cs:k:bye');
    assert.deepEqual(h.advance(2_000), []);
    assert.equal(h.sessions.nextDeadline(), Number.POSITIVE_INFINITY);
  });

  test('an address gets at most its byte budget, however many sessions point at it', () => {
    const h = harness({ maxSessions: 100_000 });
    const victim: Endpoint = { address: '192.0.2.77', port: 9 };
    let bytes = 0;
    for (let i = 0; i < 20_000; i++) {
      for (const r of h.send(victim, `rc:v:none${i}:x`)) bytes += Buffer.byteLength(r.text);
    }
    assert.ok(bytes <= 64 * 1024, `${bytes} bytes`);
    assert.ok((h.counters.rejections.reply_budget ?? 0) > 0);
    bytes = 0;
    h.advance(1_000);
    for (let i = 0; i < 1_000; i++) {
      for (const r of h.send(victim, `rc:v:none${i}:x`)) bytes += Buffer.byteLength(r.text);
    }
    // One second's refill, plus what was left of the burst (less than one 48-byte reply).
    assert.ok(bytes <= 8 * 1024 + 48 && bytes > 0, `${bytes} bytes a second later`);
  });
});

describe('legacy sessions: loopback has no byte budget', () => {
  test('clients on 127.0.0.1 (tests, benchmarks, a server beside the game) are never throttled', () => {
    const h = harness({ maxSessions: 100_000 });
    const local: Endpoint = { address: '::ffff:127.0.0.1', port: 9 };
    let replies = 0;
    for (let i = 0; i < 5_000; i++) replies += h.send(local, `rc:v:none${i}:x`).length;
    assert.equal(replies, 2 * 5_000); // ok: and close: each
    assert.equal(h.counters.rejections.reply_budget, undefined);
  });
});
