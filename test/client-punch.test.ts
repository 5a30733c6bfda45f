import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  PREDICT_AFTER_ROUNDS,
  PUNCH_INTERVAL_MS,
  PunchAttempt,
  type PunchMessage,
} from '../src/client/punch.js';
import {
  REQUEST_RETRY_FIRST_MS,
  SERVER_SILENCE_LIMIT_MS,
  Traversal,
  type TraversalEvent,
} from '../src/client/traversal.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { decodeV2, encodePunch, encodeV2, type V2Peer } from '../src/protocol/v2.js';
import { seededRandom } from '../src/sim/random.js';

const KEY = new Uint8Array(16).fill(9);
const A: Endpoint = { address: '198.51.100.1', port: 5000 };
const B: Endpoint = { address: '198.51.100.2', port: 6000 };
const DELAY_MS = 10;

interface Flight {
  at: number;
  from: Endpoint;
  to: Endpoint;
  data: Uint8Array;
}

/**
 * Two punch attempts on a fake clock. `deliver(from, to)` decides per datagram whether it
 * arrives (loss, filtering); the address a datagram arrives at is mapped to its owner.
 */
function pair(opts: {
  deliver?: (from: Endpoint, to: Endpoint) => boolean;
  peerBPublic?: Endpoint;
  budgetMs?: number;
}) {
  const flights: Flight[] = [];
  let now = 0;
  const owner = (to: Endpoint) => (to.address === A.address ? 'a' : 'b');
  const peer = (name: string, ep: Endpoint): V2Peer => ({
    name,
    nickname: name,
    isHost: name === 'a',
    publicEndpoint: ep,
    candidates: [],
  });
  const make = (self: string, selfEp: Endpoint, other: V2Peer) =>
    new PunchAttempt({
      selfName: self,
      punchKey: KEY,
      peers: [other],
      now: 0,
      budgetMs: opts.budgetMs ?? 3000,
      send: (to, data) => {
        if (opts.deliver && !opts.deliver(selfEp, to)) return;
        flights.push({ at: now + DELAY_MS, from: selfEp, to, data });
      },
    });
  const a = make('a', A, peer('b', opts.peerBPublic ?? B));
  const b = make('b', B, peer('a', A));
  const run = (untilMs: number) => {
    for (let step = 0; step < 100_000; step++) {
      if (a.state !== 'punching' && b.state !== 'punching') return;
      const nextFlight = flights.reduce((m, f) => Math.min(m, f.at), Number.POSITIVE_INFINITY);
      const next = Math.min(nextFlight, a.nextDeadline(), b.nextDeadline());
      if (next > untilMs) return;
      now = next;
      const due = flights.filter((f) => f.at <= now);
      flights.splice(0, flights.length, ...flights.filter((f) => f.at > now));
      for (const f of due) {
        const d = decodeV2(f.data);
        assert.ok(d.ok);
        if (!d.ok) continue;
        const target = owner(f.to) === 'a' ? a : b;
        target.handle(now, f.from, d.msg as PunchMessage);
      }
      a.handleTimeout(now);
      b.handleTimeout(now);
    }
  };
  return { a, b, run, now: () => now };
}

describe('punch state machine', () => {
  it('two peers punching at once confirm each other within a few round trips', () => {
    const p = pair({});
    p.run(10_000);
    assert.equal(p.a.state, 'punched');
    assert.equal(p.b.state, 'punched');
    assert.deepEqual(
      p.a.confirmed.map((c) => [c.name, c.address, c.port, c.path]),
      [['b', B.address, B.port, 'public']],
    );
    assert.ok(p.now() <= 4 * DELAY_MS, `took ${p.now()} ms`);
    assert.equal(p.a.confirmed[0]?.rttMs, 2 * DELAY_MS);
  });

  it('with 30% of datagrams lost in both directions both sides still confirm', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = seededRandom(seed);
      const p = pair({ deliver: () => rnd() >= 0.3 });
      p.run(10_000);
      assert.equal(p.a.state, 'punched', `seed ${seed}`);
      assert.equal(p.b.state, 'punched', `seed ${seed}`);
    }
  });

  it('a one-way path is not a punch: receiving punches without acks ends in failure', () => {
    // Everything from a to b is dropped: b hears a's nothing, a hears b's punches.
    const p = pair({ deliver: (from) => from.address !== A.address, budgetMs: 1000 });
    p.run(5000);
    assert.equal(p.a.state, 'failed', 'a received punches but never an ack');
    assert.equal(p.b.state, 'failed');
    assert.deepEqual(p.a.pending, ['b']);
  });

  it('port prediction finds a peer whose mapped port is next to the observed one', () => {
    // The server saw b at port 6000, but b's NAT maps towards a at 6003 and a's NAT only
    // lets in what a has sent to (port-restricted): a finds b only by predicting ports.
    const realB = { address: B.address, port: 6003 };
    let aSentToRealB = false;
    const p = pair({
      peerBPublic: B,
      deliver: (from, to) => {
        if (from.address === A.address) {
          if (to.port === realB.port) aSentToRealB = true;
          return to.port === realB.port;
        }
        return aSentToRealB; // b's datagrams pass a's filter only after a sent to b's mapping
      },
    });
    p.run(10_000);
    assert.equal(p.a.state, 'punched');
    assert.equal(p.a.confirmed[0]?.path, 'predicted');
    assert.ok(
      p.now() >= PREDICT_AFTER_ROUNDS * PUNCH_INTERVAL_MS,
      'prediction came after the plain rounds',
    );
  });

  it('punches forged without the session key are neither answered nor believed', () => {
    const sent: Uint8Array[] = [];
    const a = new PunchAttempt({
      selfName: 'a',
      punchKey: KEY,
      peers: [{ name: 'b', nickname: 'b', isHost: false, publicEndpoint: B, candidates: [] }],
      now: 0,
      send: (_to, data) => sent.push(data),
    });
    sent.length = 0;
    const wrongKey = new Uint8Array(16).fill(1);
    for (const type of ['punch', 'punch_ack'] as const) {
      const d = decodeV2(
        encodePunch(wrongKey, { type, requestId: 1, from: 'b', to: 'a', candidate: 0, sentAt: 0 }),
      );
      assert.ok(d.ok);
      if (d.ok) a.handle(1, B, d.msg as PunchMessage);
    }
    assert.equal(sent.length, 0);
    assert.equal(a.state, 'punching');
    assert.equal(a.rejected, 2);
  });
});

describe('traversal core', () => {
  it('retransmits an unanswered register with backoff, then fails with timeout', () => {
    const sentAt: number[] = [];
    const events: TraversalEvent[] = [];
    let now = 0;
    const t = new Traversal({
      server: { address: '203.0.113.1', port: 4000 },
      session: 's',
      isHost: true,
      name: 'h',
      nickname: 'H',
      maxPlayers: 2,
      localCandidates: [],
      random: seededRandom(1),
      send: () => sentAt.push(now),
      onEvent: (e) => events.push(e),
    });
    t.start(0);
    for (let i = 0; i < 1000 && t.state === 'registering'; i++) {
      now = t.nextDeadline();
      t.handleTimeout(now);
    }
    assert.equal(sentAt[1], REQUEST_RETRY_FIRST_MS);
    const gaps = sentAt.slice(1).map((x, i) => x - (sentAt[i] as number));
    assert.ok(
      gaps.every((g, i) => i === 0 || g >= (gaps[i - 1] as number)),
      'gaps never shrink',
    );
    const failed = events.find((e) => e.type === 'failed');
    assert.ok(failed?.type === 'failed' && failed.error.code === 'timeout');
    assert.ok(now >= SERVER_SILENCE_LIMIT_MS && now < SERVER_SILENCE_LIMIT_MS + 3000);
  });

  it('uses its token at once after registered, and moves to a fresh token on a rebind', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    const sent: Uint8Array[] = [];
    const events: TraversalEvent[] = [];
    const t = new Traversal({
      server,
      session: 's',
      isHost: false,
      name: 'j',
      nickname: 'J',
      maxPlayers: 2,
      localCandidates: [],
      random: seededRandom(2),
      send: (_to, data) => sent.push(data),
      onEvent: (e) => events.push(e),
    });
    const lastSent = () => {
      const d = decodeV2(sent.at(-1) as Uint8Array);
      if (!d.ok) throw new Error('the client sent an undecodable datagram');
      return d.msg;
    };
    t.start(0);
    const join = lastSent();
    assert.equal(join.type, 'join');
    const first = new Uint8Array(16).fill(1);
    t.handle(
      6,
      server,
      encodeV2({ type: 'registered', requestId: join.requestId, token: first, observed: B }),
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['registered'],
    );
    // No waiting for the keepalive period: the server lists us only once the token is used.
    const keepalive = lastSent();
    assert.ok(keepalive.type === 'keepalive');
    if (keepalive.type !== 'keepalive') return;
    assert.deepEqual(keepalive.token, first);
    // Our NAT re-mapped us: the server answers the keepalive with a token for the new address.
    const fresh = new Uint8Array(16).fill(2);
    const moved = { address: B.address, port: 6001 };
    t.handle(
      9,
      server,
      encodeV2({
        type: 'registered',
        requestId: keepalive.requestId,
        token: fresh,
        observed: moved,
      }),
    );
    const again = lastSent();
    assert.ok(again.type === 'keepalive' && again.requestId !== keepalive.requestId);
    if (again.type === 'keepalive') assert.deepEqual(again.token, fresh);
    assert.deepEqual(t.observed, moved);
    assert.equal(t.state, 'lobby');
    // A `registered` that answers nothing of ours changes nothing.
    const stray = new Uint8Array(16).fill(3);
    t.handle(
      10,
      server,
      encodeV2({ type: 'registered', requestId: 12345, token: stray, observed: A }),
    );
    assert.deepEqual(t.observed, moved);
    t.handle(
      12,
      server,
      encodeV2({
        type: 'lobby',
        requestId: again.requestId,
        version: 3,
        maxPlayers: 2,
        nicknames: ['H', 'J'],
      }),
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['registered', 'lobby'],
    );
  });

  it('a player whose registered reply was lost starts punching as soon as the peers arrive', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    const sent: { to: Endpoint; data: Uint8Array }[] = [];
    const events: TraversalEvent[] = [];
    const t = new Traversal({
      server,
      session: 's',
      isHost: false,
      name: 'j',
      nickname: 'J',
      maxPlayers: 2,
      localCandidates: [],
      random: seededRandom(3),
      send: (to, data) => sent.push({ to, data }),
      onEvent: (e) => events.push(e),
    });
    t.start(0);
    sent.length = 0;
    const token = new Uint8Array(16).fill(4);
    t.handle(
      40,
      server,
      encodeV2({
        type: 'peers',
        requestId: 0,
        punchKey: KEY,
        token,
        observed: B,
        total: 1,
        first: 0,
        peers: [{ name: 'h', nickname: 'H', isHost: true, publicEndpoint: A, candidates: [] }],
      }),
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['registered', 'peers'],
    );
    assert.equal(t.state, 'punching');
    const kinds = sent.map((x) => {
      const d = decodeV2(x.data);
      return d.ok ? `${d.msg.type}>${x.to.address}` : '?';
    });
    assert.deepEqual(kinds, [`peers_ack>${server.address}`, `punch>${A.address}`]);
  });

  describe('relay fallback', () => {
    /** A joiner whose punch to the host never gets an answer (budget 300 ms). */
    function unreachableHost(relay: boolean) {
      const server = { address: '203.0.113.1', port: 4000 };
      const sent: { to: Endpoint; data: Uint8Array }[] = [];
      const events: TraversalEvent[] = [];
      const t = new Traversal({
        server,
        session: 's',
        isHost: false,
        name: 'j',
        nickname: 'J',
        maxPlayers: 2,
        localCandidates: [],
        random: seededRandom(5),
        punchBudgetMs: 300,
        relay,
        send: (to, data) => sent.push({ to, data }),
        onEvent: (e) => events.push(e),
      });
      t.start(0);
      const token = new Uint8Array(16).fill(4);
      t.handle(
        10,
        server,
        encodeV2({
          type: 'peers',
          requestId: 0,
          punchKey: KEY,
          token,
          observed: B,
          total: 1,
          first: 0,
          peers: [{ name: 'h', nickname: 'H', isHost: true, publicEndpoint: A, candidates: [] }],
        }),
      );
      // Bounded: the punch budget plus the relay's own deadline, in virtual time.
      for (let now = 10; now < 10_000 && t.state === 'punching'; ) {
        now = Math.max(now + 1, t.nextDeadline());
        t.handleTimeout(now);
      }
      const toServer = sent
        .filter((x) => x.to === server)
        .map((x) => decodeV2(x.data))
        .flatMap((d) => (d.ok ? [d.msg] : []));
      return { t, server, events, toServer };
    }

    it('asks the server for a channel to the peer the punch missed, then reports it relayed', () => {
      const { t, server, events, toServer } = unreachableHost(true);
      assert.equal(t.state, 'relaying');
      const ask = toServer.find((m) => m.type === 'relay_allocate');
      assert.ok(ask?.type === 'relay_allocate' && ask.peer === 'h' && ask.session === 's');
      if (ask?.type !== 'relay_allocate') return;
      const channel = new Uint8Array(8).fill(6);
      t.handle(
        400,
        server,
        encodeV2({ type: 'relay_allocated', requestId: ask.requestId, peer: 'h', channel }),
      );
      const punched = events.find((e) => e.type === 'punched');
      assert.ok(punched?.type === 'punched');
      if (punched?.type !== 'punched') return;
      assert.deepEqual(
        punched.peers.map((p) => [p.name, p.path, p.address, p.port]),
        [['h', 'relay', A.address, A.port]],
      );
      assert.deepEqual(punched.relays, [{ address: A.address, port: A.port, channel }]);
    });

    it('fails with punch_failed, saying why, when the server cannot relay or stays silent', () => {
      const refused = unreachableHost(true);
      const ask = refused.toServer.find((m) => m.type === 'relay_allocate');
      if (ask === undefined) throw new Error('no relay_allocate');
      refused.t.handle(
        400,
        refused.server,
        encodeV2({
          type: 'error',
          requestId: ask.requestId,
          code: 'relay_unavailable',
          message: 'off',
        }),
      );
      const failed = refused.events.find((e) => e.type === 'failed');
      assert.ok(failed?.type === 'failed' && failed.error.code === 'punch_failed');
      if (failed?.type === 'failed')
        assert.match(failed.error.message, /cannot relay \(relay_unavailable/);

      const silent = unreachableHost(true);
      for (let now = 400; now < 20_000 && silent.t.state === 'relaying'; ) {
        now = Math.max(now + 1, silent.t.nextDeadline());
        silent.t.handleTimeout(now);
      }
      const gaveUp = silent.events.find((e) => e.type === 'failed');
      assert.ok(gaveUp?.type === 'failed' && /no relay channel/.test(gaveUp.error.message));

      const off = unreachableHost(false);
      assert.equal(off.t.state, 'failed', 'without relay the punch failure is final');
      assert.equal(off.toServer.filter((m) => m.type === 'relay_allocate').length, 0);
    });
  });
});
