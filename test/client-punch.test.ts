import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  PREDICT_AFTER_ROUNDS,
  PUNCH_INTERVAL_MS,
  PunchAttempt,
  type PunchMessage,
} from '../src/client/punch.js';
import {
  GOODBYE_MAX_TRIES,
  REQUEST_RETRY_FIRST_MS,
  SERVER_SILENCE_LIMIT_MS,
  Traversal,
  type TraversalEvent,
  type TraversalOptions,
} from '../src/client/traversal.js';
import { drain } from '../src/core/contract.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import {
  decodeV2,
  encodePunch,
  encodePush,
  encodeV2,
  relayBindProof,
  type V2Peer,
} from '../src/protocol/v2.js';
import { seededRandom } from '../src/sim/random.js';

/**
 * A Traversal whose queued work is carried out after every call from outside, as the driver
 * does: sends go to `send`, events to `onEvent`, in the order the core queued them.
 */
function driven(
  o: TraversalOptions & {
    send: (to: Endpoint, data: Uint8Array) => void;
    onEvent: (e: TraversalEvent) => void;
  },
): Traversal {
  const { send, onEvent, ...options } = o;
  const core = new Traversal(options);
  const carryOut = () => {
    for (const work of drain(core)) {
      if (work.type === 'send') send(work.to, work.data);
      else if (work.type === 'event') onEvent(work.event);
    }
  };
  return new Proxy(core, {
    get(target, key) {
      // Bound to the core itself: its private fields are not the proxy's.
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result: unknown = value.apply(target, args);
        carryOut();
        return result;
      };
    },
  });
}

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
  it('retransmits an unanswered register with backoff, then fails with server_unreachable', () => {
    const sentAt: number[] = [];
    const events: TraversalEvent[] = [];
    let now = 0;
    const t = driven({
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
    // A server that never answered at all is unreachable (not a timeout of a known server).
    const failed = events.find((e) => e.type === 'failed');
    assert.ok(failed?.type === 'failed' && failed.error.code === 'server_unreachable');
    assert.ok(now >= SERVER_SILENCE_LIMIT_MS && now < SERVER_SILENCE_LIMIT_MS + 3000);
  });

  it('hands game datagrams out as data events with their sender as given, in any state', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    const sent: { to: Endpoint; data: Uint8Array }[] = [];
    const events: TraversalEvent[] = [];
    const t = driven({
      server,
      session: 's',
      isHost: true,
      name: 'h',
      nickname: 'H',
      maxPlayers: 2,
      localCandidates: [],
      random: seededRandom(4),
      send: (to, data) => sent.push({ to, data }),
      onEvent: (e) => events.push(e),
    });
    const mapped = { address: '::ffff:198.51.100.2', port: 6000, family: 'IPv6' };
    t.handle(1, mapped, Uint8Array.of(0x68, 0x69));
    assert.equal(t.state, 'idle');
    t.start(2);
    // A protocol datagram that does not decode is neither protocol nor the game's.
    const broken = encodeV2({ type: 'ok', requestId: 1 }).subarray(0, 5);
    t.handle(3, B, broken);
    t.handle(4, B, new Uint8Array(0));
    assert.deepEqual(events, [
      { type: 'data', from: mapped, data: Uint8Array.of(0x68, 0x69) },
      { type: 'data', from: B, data: new Uint8Array(0) },
    ]);
    assert.equal(events[0]?.type === 'data' && events[0].from, mapped, 'the very sender object');
    // The game's own datagrams leave unmapped, like the core's.
    sent.length = 0;
    t.sendGame(mapped, Uint8Array.of(7));
    assert.deepEqual(sent, [{ to: B, data: Uint8Array.of(7) }]);
  });

  it('uses its token at once after registered, and moves to a fresh token on a rebind', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    const sent: Uint8Array[] = [];
    const events: TraversalEvent[] = [];
    const t = driven({
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
      encodePush(fresh, {
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

  it('peers are taken only with our own token: none before registered, none with another token', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    const sent: { to: Endpoint; data: Uint8Array }[] = [];
    const events: TraversalEvent[] = [];
    const t = driven({
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
    const join = decodeV2(sent[0]?.data as Uint8Array);
    const token = new Uint8Array(16).fill(4);
    const peers = (withToken: Uint8Array) =>
      encodeV2({
        type: 'peers',
        requestId: 0,
        punchKey: KEY,
        token: withToken,
        observed: B,
        total: 1,
        first: 0,
        peers: [{ name: 'h', nickname: 'H', isHost: true, publicEndpoint: A, candidates: [] }],
      });
    // The server pushes peers only to members validated with their token: a forged list that
    // reaches a client still registering (or carries another token) is ignored.
    t.handle(40, server, peers(token));
    assert.equal(t.state, 'registering');
    assert.ok(join.ok);
    t.handle(
      41,
      server,
      encodeV2({ type: 'registered', requestId: join.msg.requestId, token, observed: B }),
    );
    t.handle(42, server, peers(new Uint8Array(16).fill(9)));
    assert.equal(t.state, 'lobby');
    sent.length = 0;
    t.handle(43, server, peers(token));
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

  describe('relay in parallel with the punch', () => {
    const RELAY_PORT = 40_000;
    /**
     * A joiner `j` whose direct path to the host `h` (at A) is dead, on a fake clock: the
     * test plays the server, the relay and the host.
     */
    function cutOff(options: { relay?: boolean; budgetMs?: number; revision0?: boolean } = {}) {
      const server = { address: '203.0.113.1', port: 4000 };
      const relayEp = { address: server.address, port: RELAY_PORT };
      const sent: { at: number; to: Endpoint; data: Uint8Array }[] = [];
      const events: TraversalEvent[] = [];
      let clock = 0;
      const t = driven({
        server,
        session: 's',
        isHost: false,
        name: 'j',
        nickname: 'J',
        maxPlayers: 2,
        localCandidates: [],
        random: seededRandom(5),
        punchBudgetMs: options.budgetMs ?? 8_000,
        ...(options.relay === undefined ? {} : { relay: options.relay }),
        send: (to, data) => sent.push({ at: clock, to, data }),
        onEvent: (e) => events.push(e),
      });
      t.start(0);
      const token = new Uint8Array(16).fill(4);
      const join = decodeV2(sent[0]?.data ?? new Uint8Array());
      if (!join.ok) throw new Error('no join');
      t.handle(
        5,
        server,
        encodeV2({
          type: 'registered',
          requestId: join.msg.requestId,
          token,
          observed: B,
          // A revision-1 server says how often to keepalive; a revision-0 one does not.
          ...(options.revision0 ? {} : { keepaliveMs: 5000 }),
        }),
      );
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
      const advance = (until: number) => {
        while (clock < until) {
          clock = Math.min(until, Math.max(clock + 1, t.nextDeadline()));
          t.handleTimeout(clock);
        }
      };
      const at = (when: number, from: Endpoint, data: Uint8Array) => {
        advance(when);
        t.handle(when, from, data);
      };
      const decoded = (to?: Endpoint) =>
        sent
          .filter((x) => to === undefined || (x.to.address === to.address && x.to.port === to.port))
          .flatMap((x) => {
            const d = decodeV2(x.data);
            return d.ok ? [{ at: x.at, msg: d.msg }] : [];
          });
      /** The host's ack of the last punch sent to `to` (as if it came back from `from`). */
      const ackFrom = (when: number, to: Endpoint, from: Endpoint) => {
        const punch = decoded(to)
          .filter((x) => x.msg.type === 'punch')
          .at(-1)?.msg;
        if (punch?.type !== 'punch') throw new Error(`no punch to ${to.port}`);
        at(
          when,
          from,
          encodePunch(KEY, {
            type: 'punch_ack',
            requestId: 1,
            from: 'h',
            to: 'j',
            candidate: punch.candidate,
            sentAt: punch.sentAt,
          }),
        );
      };
      return { t, server, relayEp, events, advance, at, decoded, ackFrom, sent };
    }
    const ID = new Uint8Array(8).fill(6);
    const SECRET = new Uint8Array(16).fill(7);

    it('asks for a relay 500 ms after the peers while punching, binds, and reports the peer at the relay once a punch came back through it', () => {
      const c = cutOff();
      c.advance(509);
      assert.equal(c.decoded(c.server).filter((x) => x.msg.type === 'relay_allocate').length, 0);
      c.advance(510);
      const ask = c.decoded(c.server).find((x) => x.msg.type === 'relay_allocate');
      assert.ok(ask?.msg.type === 'relay_allocate' && ask.msg.peer === 'h' && ask.at === 510);
      if (ask?.msg.type !== 'relay_allocate') return;
      assert.equal(c.t.state, 'punching', 'the punch goes on');
      c.at(
        530,
        c.server,
        encodeV2({
          type: 'relay_granted',
          requestId: ask.msg.requestId,
          peer: 'h',
          port: RELAY_PORT,
          id: ID,
          bindToken: SECRET,
        }),
      );
      const binds = () => c.decoded(c.relayEp).filter((x) => x.msg.type === 'relay_bind');
      assert.equal(binds().length, 1, 'bound at once from the game socket');
      const bind = binds()[0]?.msg;
      assert.ok(bind?.type === 'relay_bind');
      if (bind?.type === 'relay_bind') {
        // Signed with the secret (revision 1), never the secret itself.
        assert.deepEqual([bind.id, bind.proof], [ID, relayBindProof(SECRET, bind.requestId, ID)]);
      }
      c.advance(700);
      assert.ok(binds().length >= 2, 'retransmitted until acknowledged');
      // Each try is signed over a fresh, greater counter: none replays another.
      const counters = binds().map((x) => x.msg.requestId);
      assert.deepEqual(
        counters,
        [...counters].sort((a, b) => a - b),
      );
      assert.equal(new Set(counters).size, counters.length);
      c.at(710, c.relayEp, encodeV2({ type: 'relay_bound', requestId: 0, id: ID }));
      assert.ok(
        c.decoded(c.relayEp).some((x) => x.msg.type === 'punch' && x.at === 710),
        'punches through the relay at once',
      );
      const bindsBefore = binds().length;
      c.ackFrom(730, c.relayEp, c.relayEp);
      const punched = c.events.find((e) => e.type === 'punched');
      assert.ok(punched?.type === 'punched');
      if (punched?.type !== 'punched') return;
      assert.deepEqual(
        punched.peers.map((p) => [p.name, p.path, p.address, p.port]),
        [['h', 'relay', c.server.address, RELAY_PORT]],
      );
      assert.equal(punched.punchMs, 720, 'from the peer list');
      c.advance(3_000);
      assert.equal(binds().length, bindsBefore, 'no more binds once bound');
      assert.ok(
        c.decoded(A).some((x) => x.msg.type === 'punch' && x.at > 730),
        'the direct path is still punched',
      );
      assert.ok(!c.decoded(c.relayEp).some((x) => x.msg.type === 'punch' && x.at > 730));
      // The direct path opens: the game is told to move.
      c.ackFrom(3_010, A, A);
      const changed = c.events.find((e) => e.type === 'pathChanged');
      assert.ok(changed?.type === 'pathChanged');
      if (changed?.type !== 'pathChanged') return;
      assert.deepEqual(
        [changed.peer.path, changed.peer.address, changed.peer.port],
        ['public', A.address, A.port],
      );
      assert.equal(changed.previous.path, 'relay');
      // The game keeps the relay endpoint `punched` gave it; its datagrams go direct now.
      const before = c.sent.length;
      c.t.sendGame(c.relayEp, Uint8Array.of(1, 2, 3));
      assert.deepEqual(
        c.sent.slice(before).map((x) => [x.to, x.data]),
        [[A, Uint8Array.of(1, 2, 3)]],
      );
      // The punch stops at the end of the budget.
      c.advance(20_000);
      assert.equal(Number.isFinite(c.t.nextDeadline()), false);
    });

    /** A cut-off joiner whose relay towards `h` is granted and bound at 710 ms. */
    function boundRelay(revision0: boolean) {
      const c = cutOff({ revision0 });
      c.advance(510);
      const ask = c.decoded(c.server).find((x) => x.msg.type === 'relay_allocate');
      if (ask?.msg.type !== 'relay_allocate') throw new Error('no relay_allocate');
      c.at(
        530,
        c.server,
        encodeV2({
          type: 'relay_granted',
          requestId: ask.msg.requestId,
          peer: 'h',
          port: RELAY_PORT,
          id: ID,
          bindToken: SECRET,
        }),
      );
      c.at(710, c.relayEp, encodeV2({ type: 'relay_bound', requestId: 0, id: ID }));
      // The peer answers through the relay: it plays there.
      c.ackFrom(730, c.relayEp, c.relayEp);
      assert.ok(c.events.some((e) => e.type === 'punched'));
      const binds = () =>
        c.decoded(c.relayEp).flatMap((x) => (x.msg.type === 'relay_bind' ? [x.msg] : []));
      return { c, binds };
    }

    it('a bound relay is bound again every 5 s (one keepalive), signed over a greater counter, so a NAT re-mapping heals within 5 s', () => {
      const { c, binds } = boundRelay(false);
      const before = binds().length;
      c.advance(5_700);
      c.advance(10_720);
      const refreshes = binds().slice(before);
      assert.equal(refreshes.length, 2, 'at 5.7 s and 10.7 s');
      let last = binds()[before - 1]?.requestId ?? 0;
      for (const b of refreshes) {
        assert.ok(b.requestId > last, 'a greater counter');
        assert.deepEqual(b.proof, relayBindProof(SECRET, b.requestId, ID));
        last = b.requestId;
      }
    });

    it('against a revision-0 server (its registered has no keepalive) it binds with the bare bindToken it knows, and never again once bound', () => {
      const { c, binds } = boundRelay(true);
      assert.ok(binds().length >= 1);
      for (const b of binds()) assert.deepEqual(b.proof, SECRET);
      const before = binds().length;
      c.advance(12_000);
      assert.equal(binds().length, before);
    });

    it('a direct confirmation before the delay asks for no relay', () => {
      const c = cutOff();
      c.ackFrom(100, A, A);
      assert.equal(c.events.at(-1)?.type, 'punched');
      c.advance(5_000);
      assert.equal(c.decoded(c.server).filter((x) => x.msg.type === 'relay_allocate').length, 0);
    });

    it('requestRelay asks at once (the hook for NAT types that rule a direct path out)', () => {
      const c = cutOff();
      c.t.requestRelay(20);
      const ask = c.decoded(c.server).find((x) => x.msg.type === 'relay_allocate');
      assert.equal(ask?.at, 0, 'sent from inside requestRelay');
      c.advance(2_000);
      const ids = c
        .decoded(c.server)
        .flatMap((x) => (x.msg.type === 'relay_allocate' ? [x.msg.requestId] : []));
      assert.ok(ids.length >= 2, 'retransmitted while unanswered');
      assert.equal(new Set(ids).size, 1, 'one request, not one more at the delay');
    });

    it('without the relay, or when the server refuses it, the punch fails at its budget, saying why', () => {
      const off = cutOff({ relay: false, budgetMs: 1_000 });
      off.advance(5_000);
      assert.equal(
        off.decoded(off.server).filter((x) => x.msg.type === 'relay_allocate').length,
        0,
      );
      const failed = off.events.find((e) => e.type === 'failed');
      assert.ok(failed?.type === 'failed' && failed.error.code === 'punch_failed');
      if (failed?.type === 'failed') assert.match(failed.error.message, /relay is off/);

      const refused = cutOff({ budgetMs: 1_000 });
      refused.advance(510);
      const ask = refused.decoded(refused.server).find((x) => x.msg.type === 'relay_allocate');
      if (ask === undefined) throw new Error('no relay_allocate');
      refused.at(
        520,
        refused.server,
        encodeV2({
          type: 'error',
          requestId: ask.msg.requestId,
          code: 'relay_unavailable',
          message: 'off',
        }),
      );
      refused.advance(5_000);
      const why = refused.events.find((e) => e.type === 'failed');
      assert.ok(why?.type === 'failed' && why.error.code === 'punch_failed');
      if (why?.type === 'failed')
        assert.match(why.error.message, /cannot relay \(relay_unavailable/);
    });
  });

  describe('partial results and peers that are gone', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    const BOB: Endpoint = { address: '198.51.100.2', port: 6000 };
    const CAROL: Endpoint = { address: '198.51.100.3', port: 7000 };
    const EPS: Record<string, Endpoint> = { bob: BOB, carol: CAROL };

    /**
     * The host `h` of a 3-player lobby punching bob and carol (budget 300 ms). `answer`
     * lists the peers that ack our punches; `punchBack` the peers whose punches reach us.
     */
    function lobbyOfThree(
      o: { answer?: string[]; punchBack?: string[]; requireAllPeers?: boolean } = {},
    ) {
      const events: TraversalEvent[] = [];
      const toServer: ReturnType<typeof decodeV2>[] = [];
      let now = 0;
      const acks: { at: number; from: Endpoint; data: Uint8Array }[] = [];
      const t: Traversal = driven({
        server,
        session: 's',
        isHost: true,
        name: 'h',
        nickname: 'H',
        maxPlayers: 3,
        localCandidates: [],
        random: seededRandom(7),
        punchBudgetMs: 300,
        requireAllPeers: o.requireAllPeers,
        send: (to, data) => {
          if (to === server) {
            toServer.push(decodeV2(data));
            return;
          }
          const d = decodeV2(data);
          if (!d.ok || d.msg.type !== 'punch') return;
          const from = Object.keys(EPS).find((n) => EPS[n] === to || EPS[n]?.port === to.port);
          if (from === undefined || !(o.answer ?? []).includes(from)) return;
          const ack = encodePunch(KEY, {
            type: 'punch_ack',
            requestId: 1,
            from,
            to: 'h',
            candidate: d.msg.candidate,
            sentAt: d.msg.sentAt,
          });
          acks.push({ at: now + 5, from: EPS[from] as Endpoint, data: ack });
        },
        onEvent: (e) => events.push(e),
      });
      t.start(0);
      // Registered first: a client takes peers only with the token it was given.
      const hostReq = toServer[0];
      if (hostReq?.ok) {
        const token = new Uint8Array(16).fill(4);
        const reply = { type: 'registered', requestId: hostReq.msg.requestId, token, observed: A };
        t.handle(5, server, encodeV2(reply as Parameters<typeof encodeV2>[0]));
      }
      const peer = (name: string): V2Peer => ({
        name,
        nickname: name.toUpperCase(),
        isHost: false,
        publicEndpoint: EPS[name] as Endpoint,
        candidates: [],
      });
      t.handle(
        10,
        server,
        encodeV2({
          type: 'peers',
          requestId: 0,
          punchKey: KEY,
          token: new Uint8Array(16).fill(4),
          observed: A,
          total: 2,
          first: 0,
          peers: [peer('bob'), peer('carol')],
        }),
      );
      /** Runs virtual time to `until`, delivering acks and the punch-backs. */
      const run = (until: number) => {
        for (now = 10; now <= until; now += 5) {
          for (const a of acks.filter((x) => x.at <= now)) t.handle(now, a.from, a.data);
          acks.splice(0, acks.length, ...acks.filter((x) => x.at > now));
          for (const name of o.punchBack ?? []) {
            const punch = encodePunch(KEY, {
              type: 'punch',
              requestId: 1,
              from: name,
              to: 'h',
              candidate: 0,
              sentAt: now,
            });
            t.handle(now, EPS[name] as Endpoint, punch);
          }
          if (t.nextDeadline() <= now) t.handleTimeout(now);
        }
      };
      const gone = (name: string, why: 'left' | 'silent') =>
        t.handle(
          now,
          server,
          encodePush(new Uint8Array(16).fill(4), { type: 'peer_left', requestId: 0, name, why }),
        );
      const outcome = () => events.find((e) => e.type === 'punched' || e.type === 'failed');
      const sentToServer = () => toServer.flatMap((d) => (d.ok ? [d.msg] : []));
      return { t, events, run, gone, outcome, sentToServer };
    }

    it('by default succeeds with the peers it reached and names the others with their cause', () => {
      const l = lobbyOfThree({ answer: ['carol'] });
      l.run(200);
      assert.equal(l.outcome(), undefined, 'bob may still answer within the budget');
      l.run(400);
      const done = l.outcome();
      assert.ok(done?.type === 'punched');
      if (done?.type !== 'punched') return;
      assert.deepEqual(
        done.peers.map((p) => p.name),
        ['carol'],
      );
      assert.deepEqual(done.failed, [
        { name: 'bob', nickname: 'BOB', isHost: false, cause: 'no_answer' },
      ]);
      // The confirmed peer can still confirm us: we keep answering its punches.
      assert.ok(l.t.punch?.answering);
    });

    it('with requireAllPeers the same lobby fails with punch_failed naming bob', () => {
      const l = lobbyOfThree({ answer: ['carol'], requireAllPeers: true });
      l.run(400);
      const done = l.outcome();
      assert.ok(done?.type === 'failed' && done.error.code === 'punch_failed');
      if (done?.type !== 'failed') return;
      assert.match(done.error.message, /reached carol but not all: nothing from bob got through/);
      // Failing, it leaves the session so that its seat (or its lobby) is freed at once.
      assert.ok(l.sentToServer().some((m) => m.type === 'leave'));
    });

    it('a peer that left ends the punch at once: no wait for the budget, and no NAT blamed', () => {
      const l = lobbyOfThree({ answer: ['carol'] });
      l.run(100);
      assert.equal(l.outcome(), undefined);
      l.gone('bob', 'left');
      const done = l.outcome();
      assert.ok(done?.type === 'punched', 'at once, well before the 300 ms budget');
      if (done?.type === 'punched')
        assert.deepEqual(
          done.failed.map((f) => f.cause),
          ['left'],
        );

      const alone = lobbyOfThree();
      alone.run(50);
      alone.gone('bob', 'left');
      assert.equal(alone.outcome(), undefined, 'carol may still answer');
      alone.gone('carol', 'left');
      const failed = alone.outcome();
      assert.ok(failed?.type === 'failed' && failed.error.code === 'peer_left');
      if (failed?.type !== 'failed') return;
      assert.match(failed.error.message, /bob left the session; carol left the session/);
      assert.doesNotMatch(failed.error.message, /symmetric|NAT/);
    });

    it('a peer the server reports silent is named as such; one whose punches arrive is one_way', () => {
      const l = lobbyOfThree({ punchBack: ['carol'] });
      l.run(50);
      l.gone('bob', 'silent');
      l.gone('carol', 'silent');
      l.run(400);
      const done = l.outcome();
      assert.ok(done?.type === 'failed' && done.error.code === 'punch_failed');
      if (done?.type !== 'failed') return;
      assert.match(done.error.message, /bob stopped answering the server/);
      assert.match(done.error.message, /carol's punches reached us but ours never reached it/);
      assert.doesNotMatch(done.error.message.split(';')[0] ?? '', /symmetric/);
      const onlyBob = lobbyOfThree();
      onlyBob.run(50);
      onlyBob.gone('bob', 'silent');
      onlyBob.gone('carol', 'silent');
      onlyBob.run(400);
      const gone = onlyBob.outcome();
      assert.ok(gone?.type === 'failed' && gone.error.code === 'peer_left', 'everyone is gone');
      if (gone?.type === 'failed') assert.doesNotMatch(gone.error.message, /symmetric|NAT/);
    });
  });

  describe('leaving', () => {
    const server = { address: '203.0.113.1', port: 4000 };
    function inLobby(timeoutMs?: number, nicknames: readonly string[] = ['H']) {
      const sent: { at: number; msg: ReturnType<typeof decodeV2> }[] = [];
      const events: TraversalEvent[] = [];
      let now = 0;
      const t = driven({
        server,
        session: 's',
        isHost: true,
        name: 'h',
        nickname: 'H',
        maxPlayers: 3,
        localCandidates: [],
        random: seededRandom(8),
        timeoutMs,
        send: (_to, data) => sent.push({ at: now, msg: decodeV2(data) }),
        onEvent: (e) => events.push(e),
      });
      t.start(0);
      const host = sent.at(-1)?.msg;
      if (!host?.ok) throw new Error('no host request');
      t.handle(
        5,
        server,
        encodeV2({
          type: 'registered',
          requestId: host.msg.requestId,
          token: new Uint8Array(16).fill(1),
          observed: A,
        }),
      );
      const ka = sent.at(-1)?.msg;
      if (!ka?.ok) throw new Error('no keepalive');
      t.handle(
        8,
        server,
        encodePush(new Uint8Array(16).fill(1), {
          type: 'lobby',
          requestId: ka.msg.requestId,
          version: 2,
          maxPlayers: 3,
          nicknames,
        }),
      );
      const advance = (until: number) => {
        for (let i = 0; i < 10_000; i++) {
          const next = t.nextDeadline();
          if (!(next <= until)) break;
          now = next;
          t.handleTimeout(now);
        }
      };
      const leaves = () => sent.filter((x) => x.msg.ok && x.msg.msg.type === 'leave');
      return { t, events, advance, leaves, sent };
    }

    it('an unanswered leave is retried a bounded number of times, then given up within 1.5 s', () => {
      const l = inLobby();
      l.t.goodbye(100, 'leave');
      l.advance(10_000);
      const tries = l.leaves();
      assert.equal(tries.length, GOODBYE_MAX_TRIES);
      assert.ok((tries.at(-1)?.at ?? 0) - 100 <= 1000, 'all tries within a second');
      const bye = l.events.find((e) => e.type === 'goodbye');
      assert.ok(bye?.type === 'goodbye' && bye.ok === false);
      assert.equal(l.t.nextDeadline(), Number.POSITIVE_INFINITY, 'then nothing more');
    });

    it('a full lobby that never starts says the server waits for the host (AUTOSTART n)', () => {
      const l = inLobby(2000, ['H', 'B', 'C']);
      l.advance(2000);
      const failed = l.events.find((e) => e.type === 'failed');
      assert.ok(failed?.type === 'failed' && failed.error.code === 'timeout');
      if (failed?.type === 'failed') {
        assert.match(
          failed.error.message,
          /\(lobby 3\/3\): the lobby is full and the server waits for you to start it/,
        );
      }
    });

    it('a host whose timeout passes in the lobby says how full it was, and leaves to free the name', () => {
      const l = inLobby(2000);
      l.advance(2000);
      const failed = l.events.find((e) => e.type === 'failed');
      assert.ok(failed?.type === 'failed' && failed.error.code === 'timeout');
      if (failed?.type === 'failed') {
        assert.match(failed.error.message, /did not start within 2000 ms \(lobby 1\/3\)/);
      }
      const leave = l.leaves()[0]?.msg;
      assert.ok(
        leave?.ok && leave.msg.type === 'leave',
        'the host leaves: the server closes its lobby',
      );
      if (!leave?.ok) return;
      l.t.handle(2010, server, encodeV2({ type: 'ok', requestId: leave.msg.requestId }));
      const bye = l.events.find((e) => e.type === 'goodbye');
      assert.ok(bye?.type === 'goodbye' && bye.ok);
    });

    it('a lobby closed because its host left fails with host_left', () => {
      const l = inLobby();
      l.t.handle(
        20,
        server,
        encodePush(new Uint8Array(16).fill(1), {
          type: 'closed',
          requestId: 0,
          code: 'host_left',
          reason: 'The host left.',
        }),
      );
      const failed = l.events.find((e) => e.type === 'failed');
      assert.ok(failed?.type === 'failed' && failed.error.code === 'host_left');
    });

    it('ignores and counts lobby, closed and peer_left from the server address without our tag', () => {
      const l = inLobby(undefined, ['H', 'J']);
      const ours = new Uint8Array(16).fill(1);
      const other = new Uint8Array(16).fill(7);
      const lobby = { type: 'lobby', requestId: 0, version: 9, maxPlayers: 3 } as const;
      const closed = { type: 'closed', requestId: 0, code: 'host_left' } as const;
      const forged = [
        // Another member's token (or a guess): the tag does not verify with ours.
        encodePush(other, { ...lobby, nicknames: ['H', 'J', 'X'] }),
        encodePush(other, { ...closed, reason: 'Forged.' }),
        encodePush(other, { type: 'peer_left', requestId: 0, name: 'J', why: 'left' }),
        // The old format (no tag) and a tag cut short: the tag is where the bytes end.
        encodePush(ours, { ...closed, reason: 'x' }).subarray(0, -16),
        encodePush(ours, { ...closed, reason: 'Forged.' }).subarray(0, -1),
      ];
      // Our tag on other bytes: one flipped bit of the reason.
      const flipped = encodePush(ours, { ...closed, reason: 'Forged.' });
      const at = flipped.length - 20;
      flipped[at] = (flipped[at] as number) ^ 1;
      forged.push(flipped);
      const before = l.events.length;
      for (const [i, data] of forged.entries()) l.t.handle(20 + i, server, data);
      assert.equal(l.t.forgedPushes, 4, 'four decode with a wrong tag; the cut ones do not decode');
      assert.equal(l.events.length, before, 'no lobby event, no failure');
      assert.equal(l.t.state, 'lobby');
      // The same push with our tag is taken.
      l.t.handle(40, server, encodePush(ours, { ...lobby, nicknames: ['H', 'J', 'X'] }));
      const last = l.events.at(-1);
      assert.ok(last?.type === 'lobby' && last.nicknames.length === 3);
      l.t.handle(41, server, encodePush(ours, { ...closed, reason: 'Bye.' }));
      const failed = l.events.find((e) => e.type === 'failed');
      assert.ok(failed?.type === 'failed' && failed.error.code === 'host_left');
      assert.equal(l.t.forgedPushes, 4);
    });
  });
});
