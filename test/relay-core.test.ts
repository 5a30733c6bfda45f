import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { decodeV2, encodeRelayBind, encodeV2 } from '../src/protocol/v2.js';
import { createCounters } from '../src/server/counters.js';
import { sourceKey } from '../src/server/source-limits.js';
import {
  lobbyPairs,
  RELAY_REFUSAL_MESSAGES,
  RelayAllocations,
  type RelayLimits,
  type RelayMember,
} from '../src/server/v2-relay.js';

/**
 * Issue 24: the relay core alone (sans-IO, an injected clock): one definition of a source,
 * the per-session cap, the per-source share of the ports, the rate caps per pair and in total,
 * and binds that move a bound side only with a fresh proof.
 */

interface Sent {
  readonly port: number;
  readonly to: Endpoint;
  readonly data: Uint8Array;
}

function relay(limits: Partial<RelayLimits> = {}, ports = { low: 40_000, high: 40_999 }) {
  const counters = createCounters();
  const grants: { to: Endpoint; data: Uint8Array }[] = [];
  const sent: Sent[] = [];
  let n = 0;
  const r = new RelayAllocations({
    outbox: { send: (to, data) => grants.push({ to, data }) },
    io: {
      open: () => {},
      close: () => {},
      send: (port, to, data) => sent.push({ port, to, data }),
    },
    counters,
    randomBytes: (bytes) => {
      n++;
      return new Uint8Array(bytes).map((_, i) => (n * 31 + i) & 255);
    },
    ports,
    limits,
  });
  return { r, counters, grants, sent };
}

const member = (name: string, address: string, port = 5000): RelayMember => ({
  name,
  tokenKey: name,
  endpoint: { address, port },
  isHost: false,
});

/** Asks (and opens the port at once) for the pair; the refusal, if any. */
function ask(
  t: ReturnType<typeof relay>,
  now: number,
  instance: number,
  maxPlayers: number,
  self: RelayMember,
  peer: RelayMember,
) {
  const refused = t.r.allocate(now, { instance, maxPlayers, self, peer, requestId: 1 });
  for (let p = 40_000; p <= 40_999; p++) t.r.portOpened(now, p);
  return refused;
}

/** A lobby of `players` members at `addressOf(i)`, asking for every pair: grants, refusals. */
function lobby(
  t: ReturnType<typeof relay>,
  instance: number,
  players: number,
  addressOf: (i: number) => string,
) {
  const members = Array.from({ length: players }, (_, i) =>
    member(`s${instance}m${i}`, addressOf(i), 5000 + i),
  );
  const refusals: Record<string, number> = {};
  let granted = 0;
  for (let i = 0; i < players; i++) {
    for (let j = i + 1; j < players; j++) {
      const refused = t.r.allocate(0, {
        instance,
        maxPlayers: players,
        self: members[i] as RelayMember,
        peer: members[j] as RelayMember,
        requestId: 1,
      });
      if (refused === undefined) granted++;
      else refusals[refused] = (refusals[refused] ?? 0) + 1;
    }
  }
  return { granted, refusals, members };
}

/** The grant the last `relay_granted` to `to` carried. */
function grantFor(t: ReturnType<typeof relay>, to: Endpoint) {
  for (let i = t.grants.length - 1; i >= 0; i--) {
    const g = t.grants[i];
    if (g === undefined || g.to.address !== to.address || g.to.port !== to.port) continue;
    const d = decodeV2(g.data);
    if (d.ok && d.msg.type === 'relay_granted') return d.msg;
  }
  throw new Error(`no grant for ${to.address}:${to.port}`);
}

describe('relay core: one definition of a source', () => {
  it('the relay counts a source as source-limits.ts does: an IPv6 /64, an IPv4 address', () => {
    const t = relay();
    lobby(t, 1, 4, (i) => `2001:db8:1:2::${i + 1}`);
    // Six pairs, every member of one /64: six allocations for that one source.
    assert.equal(t.r.sourceCount('2001:db8:1:2::ffff'), 6);
    assert.equal(sourceKey('2001:db8:1:2::ffff'), sourceKey('2001:db8:1:2:aaaa::1'));
    assert.equal(t.r.sourceCount('2001:db8:1:3::1'), 0, 'another /64 is another source');
    lobby(t, 2, 3, () => '::ffff:192.0.2.7');
    assert.equal(t.r.sourceCount('192.0.2.7'), 3, 'IPv4-mapped IPv6 is the IPv4 address');
  });
});

describe('relay core: per-session cap and per-source share', () => {
  it('a full 32-player lobby behind one address gets all 496 allocations of the default 1000 ports', () => {
    const t = relay();
    const { granted, refusals } = lobby(t, 1, 32, () => '198.51.100.9');
    assert.deepEqual([granted, refusals], [lobbyPairs(32), {}]);
    assert.equal(granted, 496);
  });

  it('one /64 with two full lobbies gets at most half the ports (source_full); another source still gets one', () => {
    const t = relay();
    const a = lobby(t, 1, 32, (i) => `2001:db8:1:2::${i + 1}`);
    const b = lobby(t, 2, 32, (i) => `2001:db8:1:2::${i + 101}`);
    assert.equal(a.granted + b.granted, 500, 'half of 1000 ports');
    assert.equal(t.r.maxPerSource, 500);
    assert.equal(b.refusals.source_full, 992 - 500);
    assert.equal(t.counters.relayRefusals.source_full, 492);
    const other = ask(t, 1, 3, 2, member('x', '203.0.113.1'), member('y', '203.0.113.2'));
    assert.equal(other, undefined, 'another source is served');
    assert.equal(t.r.size, 501);
  });

  it('a session holds at most the pairs of a full lobby of its size (session_full), or --relay-session-max', () => {
    const t = relay();
    const m = Array.from({ length: 5 }, (_, i) => member(`m${i}`, `192.0.2.${i + 1}`));
    // A 3-player session whose members are replaced (late joins, rejoins): 3 pairs at once.
    const pairs: [number, number][] = [
      [0, 1],
      [0, 2],
      [1, 2],
      [0, 3],
      [3, 4],
    ];
    const got = pairs.map(([i, j]) => ask(t, 0, 7, 3, m[i] as RelayMember, m[j] as RelayMember));
    assert.deepEqual(got, [undefined, undefined, undefined, 'session_full', 'session_full']);
    assert.equal(t.counters.relayRefusals.session_full, 2);
    t.r.closeMember(7, 'm2');
    assert.equal(ask(t, 0, 7, 3, m[0] as RelayMember, m[3] as RelayMember), undefined);
    const capped = relay({ maxPerSession: 1 });
    assert.equal(ask(capped, 0, 1, 32, m[0] as RelayMember, m[1] as RelayMember), undefined);
    assert.equal(ask(capped, 0, 1, 32, m[0] as RelayMember, m[2] as RelayMember), 'session_full');
  });

  it('the pool full: full, with a message that says so', () => {
    const t = relay({}, { low: 40_000, high: 40_001 });
    assert.equal(t.r.maxPerSource, 1);
    ask(t, 0, 1, 2, member('a', '192.0.2.1'), member('b', '192.0.2.2'));
    ask(t, 0, 2, 2, member('c', '192.0.2.3'), member('d', '192.0.2.4'));
    assert.equal(ask(t, 0, 3, 2, member('e', '192.0.2.5'), member('f', '192.0.2.6')), 'full');
    assert.equal(t.counters.relayRefusals.full, 1);
    assert.match(RELAY_REFUSAL_MESSAGES.full, /every relay port is in use/);
    // Never cut: an error answers a 29-byte relay_allocate with at most 3x its size.
    for (const m of Object.values(RELAY_REFUSAL_MESSAGES)) assert.ok(m.length <= 59, m);
  });
});

/** A bound pair on the relay: a at A, b at B. */
function boundPair(limits: Partial<RelayLimits> = {}) {
  const t = relay(limits);
  const A: Endpoint = { address: '192.0.2.1', port: 5000 };
  const B: Endpoint = { address: '192.0.2.2', port: 6000 };
  const a = member('a', A.address, A.port);
  const b = member('b', B.address, B.port);
  ask(t, 0, 1, 2, a, b);
  const ga = grantFor(t, A);
  ask(t, 0, 1, 2, b, a);
  const gb = grantFor(t, B);
  const port = ga.port;
  t.r.handle(1, port, A, encodeRelayBind(ga.bindToken, 1, ga.id));
  t.r.handle(1, port, B, encodeRelayBind(gb.bindToken, 1, gb.id));
  t.sent.length = 0;
  /** Where a datagram from b now goes (undefined: dropped). */
  const fromB = (now: number, data = Uint8Array.of(1, 2, 3)) => {
    t.sent.length = 0;
    t.r.handle(now, port, B, data);
    return t.sent[0]?.to;
  };
  return { t, A, B, ga, gb, port, fromB };
}

describe('relay core: binds', () => {
  it('a replayed signed bind from another address does not move a bound side; the member’s fresh bind from its new mapping does', () => {
    const { t, A, ga, port, fromB } = boundPair();
    const captured = encodeRelayBind(ga.bindToken, 2, ga.id);
    const moved: Endpoint = { address: '192.0.2.1', port: 5999 };
    // The member re-binds (its refresh): the observer captures that datagram.
    t.r.handle(10, port, A, captured);
    const attacker: Endpoint = { address: '203.0.113.66', port: 7777 };
    t.sent.length = 0;
    t.r.handle(11, port, attacker, captured);
    assert.deepEqual(t.sent, [], 'nothing answers the replay');
    assert.equal(t.counters.rejections.relay_stale_bind, 1);
    assert.deepEqual(fromB(12), A, 'b still reaches a');
    // a's NAT re-maps it: its next refresh (a greater counter) comes from the new mapping.
    t.r.handle(5000, port, moved, encodeRelayBind(ga.bindToken, 3, ga.id));
    assert.deepEqual(fromB(5001), moved, 'b reaches a at its new mapping');
    assert.equal(t.counters.rejections.relay_rebind, 1);
    // The bind the observer saw before (counter 2) is still nothing.
    t.r.handle(5002, port, attacker, captured);
    assert.deepEqual(fromB(5003), moved);
  });

  it('a revision-0 bind (the bare bindToken) binds, is answered again from its source, and never moves a bound side', () => {
    const t = relay();
    const A: Endpoint = { address: '192.0.2.1', port: 5000 };
    ask(t, 0, 1, 2, member('a', A.address, A.port), member('b', '192.0.2.2'));
    const g = grantFor(t, A);
    const bare = encodeV2({ type: 'relay_bind', requestId: 9, id: g.id, proof: g.bindToken });
    t.r.handle(1, g.port, A, bare);
    t.r.handle(2, g.port, A, bare);
    assert.equal(t.sent.length, 2, 'relay_bound twice');
    t.sent.length = 0;
    t.r.handle(3, g.port, { address: '203.0.113.66', port: 1 }, bare);
    assert.deepEqual(t.sent, []);
    assert.equal(t.counters.rejections.relay_rebind_refused, 1);
    // The member itself, signing with a counter, may still move it.
    t.r.handle(
      4,
      g.port,
      { address: '192.0.2.1', port: 5001 },
      encodeRelayBind(g.bindToken, 10, g.id),
    );
    assert.equal(t.sent.length, 1);
  });

  it('a bind signed with another token is refused', () => {
    const { t, ga, port } = boundPair();
    t.r.handle(
      5,
      port,
      { address: '203.0.113.66', port: 1 },
      encodeRelayBind(new Uint8Array(16), 99, ga.id),
    );
    assert.equal(t.counters.rejections.relay_bad_bind, 1);
  });

  it('a refresh from the bound source does not keep an idle allocation open', () => {
    const { t, A, ga, port } = boundPair();
    for (let s = 1; s <= 12; s++)
      t.r.handle(s * 5000, port, A, encodeRelayBind(ga.bindToken, 1 + s, ga.id));
    t.r.handleTimeout(61_000);
    t.r.handleTimeout(91_000);
    assert.equal(t.r.size, 0);
  });
});

describe('relay core: rate caps', () => {
  it('per pair: past --relay-pair-packets in a second the rest is dropped, counted pair_rate', () => {
    const { t, fromB } = boundPair({ packetsPerSecond: 10 });
    let through = 0;
    for (let i = 0; i < 25; i++) if (fromB(100) !== undefined) through++;
    assert.equal(through, 10);
    assert.equal(t.counters.relayDrops.pair_rate, 15);
    assert.equal(t.counters.rejections.relay_rate_limited, 15);
    assert.notEqual(fromB(1100), undefined, 'refilled a second later');
  });

  it('in total: past --relay-total-packets across all pairs the rest is dropped, counted server_rate', () => {
    const { t, fromB } = boundPair({ totalPacketsPerSecond: 5 });
    let through = 0;
    for (let i = 0; i < 20; i++) if (fromB(100) !== undefined) through++;
    assert.equal(through, 5);
    assert.equal(t.counters.relayDrops.server_rate, 15);
    assert.equal(t.counters.relayDrops.pair_rate, undefined);
  });

  it('bytes: --relay-pair-bytes and --relay-total-bytes cap what goes through', () => {
    const big = new Uint8Array(1000);
    const pair = boundPair({ bytesPerSecond: 5000 });
    let through = 0;
    for (let i = 0; i < 10; i++) if (pair.fromB(100, big) !== undefined) through++;
    assert.equal(through, 5);
    const total = boundPair({ totalBytesPerSecond: 3000 });
    through = 0;
    for (let i = 0; i < 10; i++) if (total.fromB(100, big) !== undefined) through++;
    assert.equal(through, 3);
  });
});
