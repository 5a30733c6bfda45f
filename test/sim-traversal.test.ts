import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  NAT_TYPES,
  type NatType,
  SimNat,
  seededRandom,
  simulateTraversal,
} from '../src/sim/index.js';

const INSIDE = { address: '10.1.0.2', port: 50000 };
const SERVER = { address: '203.0.113.1', port: 4000 };
const PEER = { address: '203.0.113.2', port: 7000 };

describe('simulated NAT models', () => {
  it('cones keep one public port for every destination; symmetric picks one per destination', () => {
    for (const type of ['full-cone', 'address-restricted', 'port-restricted'] as const) {
      const nat = new SimNat(type, '198.51.100.1', seededRandom(1));
      const m1 = nat.outbound(INSIDE, SERVER);
      const m2 = nat.outbound(INSIDE, PEER);
      assert.deepEqual(m1, m2, type);
      assert.equal(m1.port, INSIDE.port, `${type} keeps the local port`);
    }
    const sym = new SimNat('symmetric', '198.51.100.1', seededRandom(1));
    assert.notEqual(sym.outbound(INSIDE, SERVER).port, sym.outbound(INSIDE, PEER).port);
  });

  it('filtering: full cone lets anyone in, restricted only contacted hosts, port-restricted only contacted endpoints', () => {
    const stranger = { address: '203.0.113.9', port: 1 };
    const otherPort = { address: SERVER.address, port: 4001 };
    const expect: Record<string, [boolean, boolean, boolean]> = {
      // [server itself, server's other port, stranger]
      'full-cone': [true, true, true],
      'address-restricted': [true, true, false],
      'port-restricted': [true, false, false],
      symmetric: [true, false, false],
    };
    for (const [type, [same, port, other]] of Object.entries(expect)) {
      const nat = new SimNat(type as Exclude<NatType, 'none'>, '198.51.100.1', seededRandom(2));
      const mapped = nat.outbound(INSIDE, SERVER);
      assert.equal(nat.inbound(mapped.port, SERVER) !== undefined, same, `${type} server`);
      assert.equal(nat.inbound(mapped.port, otherPort) !== undefined, port, `${type} other port`);
      assert.equal(nat.inbound(mapped.port, stranger) !== undefined, other, `${type} stranger`);
    }
  });
});

describe('simulated traversals (real server and client cores)', () => {
  it('every pair of cone NATs connects over the public endpoints', () => {
    const cones: NatType[] = ['none', 'full-cone', 'address-restricted', 'port-restricted'];
    for (const natA of cones) {
      for (const natB of cones) {
        const r = simulateTraversal({ natA, natB, seed: 3 });
        assert.ok(r.ok, `${natA} <-> ${natB}`);
        assert.equal(r.path, 'public', `${natA} <-> ${natB}`);
      }
    }
  });

  it('a symmetric NAT facing a full-cone or restricted NAT connects through the peer-reflexive address', () => {
    for (const natA of ['full-cone', 'address-restricted'] as const) {
      const r = simulateTraversal({ natA, natB: 'symmetric', seed: 4 });
      assert.ok(r.ok, natA);
      assert.equal(r.path, 'reflexive');
    }
  });

  it('symmetric <-> symmetric fails with punch_failed within the punch budget', () => {
    const budget = 3000;
    const r = simulateTraversal({ natA: 'symmetric', natB: 'symmetric', punchBudgetMs: budget });
    assert.equal(r.ok, false);
    for (const c of r.clients) {
      assert.equal(c.failedCode, 'punch_failed');
      assert.match(c.failedMessage ?? '', /symmetric/);
    }
    assert.ok(r.endedAtMs <= budget + 500, `ended at ${r.endedAtMs}`);
  });

  it('one unreachable player does not fail the lobby: the others connect and name it, it fails alone', () => {
    const r = simulateTraversal({
      players: 3,
      nats: ['port-restricted', 'port-restricted', 'symmetric'],
      punchBudgetMs: 2000,
      seed: 7,
    });
    assert.equal(r.ok, false, 'not every pair');
    const [host, p1, p2] = r.clients;
    assert.deepEqual(Object.keys(host?.paths ?? {}), ['player1']);
    assert.deepEqual(Object.keys(p1?.paths ?? {}), ['host']);
    assert.deepEqual(host?.failedPeers, { player2: 'no_answer' });
    assert.deepEqual(p1?.failedPeers, { player2: 'no_answer' });
    // It reached no one: its own traversal fails, naming both peers; both are alive (the
    // server never reported them gone), so the NATs are the cause it gives.
    assert.equal(p2?.failedCode, 'punch_failed');
    assert.match(p2?.failedMessage ?? '', /nothing from host got through.*nothing from player1/);
    assert.match(p2?.failedMessage ?? '', /symmetric/);
  });

  it('players behind one router connect over their LAN addresses (no hairpinning needed)', () => {
    const r = simulateTraversal({ players: 3, sameLan: true, natA: 'port-restricted', seed: 5 });
    assert.ok(r.ok);
    for (const c of r.clients)
      for (const path of Object.values(c.paths)) assert.equal(path, 'local');
  });

  it('a 4-player lobby with 30% loss on every datagram completes, every pair confirmed', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const r = simulateTraversal({ players: 4, lossRate: 0.3, seed });
      assert.ok(r.ok, `seed ${seed}: ${r.clients.map((c) => c.failedMessage).join('; ')}`);
      for (const c of r.clients) assert.equal(Object.keys(c.paths).length, 3);
    }
  });

  it('a joiner that starts before the host still gets in', () => {
    const r = simulateTraversal({ hostDelayMs: 500, seed: 6 });
    assert.ok(r.ok);
    assert.ok((r.punchedAtMs[1] as number) > 500, 'the joiner waited for the host');
  });

  it('meets the benchmark target: p50 <= 210 ms at 20 ms one-way delay, 5% loss, port-restricted', () => {
    const times: number[] = [];
    for (let seed = 1; seed <= 200; seed++) {
      const r = simulateTraversal({
        natA: 'port-restricted',
        natB: 'port-restricted',
        oneWayDelayMs: 20,
        lossRate: 0.05,
        seed,
      });
      assert.ok(r.ok, `seed ${seed}`);
      times.push(r.elapsedMs);
    }
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor(times.length * 0.5)] as number;
    assert.ok(p50 <= 210, `p50 ${p50} ms`);
  });
});

/**
 * What a pair of the simulator's NATs allows (RFC 4787): `direct` when some technique always
 * connects it, `relay` when none can, `either` when only birthday probing can (it may lose).
 */
function pairAllows(a: NatType, b: NatType): 'direct' | 'relay' | 'either' {
  const symmetric = [a, b].filter((n) => n === 'symmetric').length;
  if (symmetric === 0) return 'direct';
  if (symmetric === 2) return 'relay';
  // A random-port mapping is reached at its reflexive address through any filter but an
  // exact-port one; against that one only birthday probing goes direct.
  return a === 'port-restricted' || b === 'port-restricted' ? 'either' : 'direct';
}

describe('simulated traversals with every socket and the relay on, as the clients run by default', () => {
  it('random NATs and loss: every pair of every lobby connects, direct where the pair allows, relayed otherwise (property, seeded)', () => {
    const seen: Record<string, number> = {};
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...NAT_TYPES), { minLength: 2, maxLength: 4 }),
        fc.constantFrom(0, 0.05, 0.1, 0.3),
        fc.integer({ min: 1, max: 2 ** 30 }),
        (nats, lossRate, seed) => {
          const r = simulateTraversal({
            players: nats.length,
            nats,
            lossRate,
            seed,
            relay: true,
            classifyNat: true,
          });
          const what = `${nats.join(',')} at ${lossRate} loss, seed ${seed}`;
          assert.ok(
            r.ok,
            `${what}: ${r.clients.map((c) => c.failedMessage ?? JSON.stringify(c.failedPeers)).join('; ')}`,
          );
          r.clients.forEach((c, i) => {
            r.clients.forEach((peer, j) => {
              if (i === j) return;
              const path = c.paths[peer.name];
              const allows = pairAllows(nats[i] as NatType, nats[j] as NatType);
              seen[`${allows}:${path === 'relay' ? 'relay' : 'direct'}`] =
                (seen[`${allows}:${path === 'relay' ? 'relay' : 'direct'}`] ?? 0) + 1;
              if (allows === 'direct')
                assert.notEqual(path, 'relay', `${what}: ${c.name}->${peer.name}`);
              if (allows === 'relay')
                assert.equal(path, 'relay', `${what}: ${c.name}->${peer.name}`);
            });
          });
        },
      ),
      { numRuns: 150, seed: 0x5eed },
    );
    // Each kind of pair came up, so the property said something about each.
    for (const kind of ['direct:direct', 'relay:relay', 'either:direct']) {
      assert.ok((seen[kind] ?? 0) > 0, `${kind} in ${JSON.stringify(seen)}`);
    }
  });

  it('the random-port side and a port-restricted one go direct by birthday probing at 0 % loss, in virtual time', () => {
    let direct = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const r = simulateTraversal({
        natA: seed % 2 === 0 ? 'symmetric' : 'port-restricted',
        natB: seed % 2 === 0 ? 'port-restricted' : 'symmetric',
        seed,
        relay: true,
        classifyNat: true,
      });
      assert.ok(r.ok, `seed ${seed}`);
      const paths = r.clients.flatMap((c) => Object.values(c.paths));
      // One side may confirm first at the reflexive address the winning birthday socket showed.
      if (paths.includes('birthday') && !paths.includes('relay')) direct++;
    }
    assert.ok(direct >= 19, `${direct}/20 direct by birthday`);
  });
});
