import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  expectationFor,
  expectPair,
  MATRIX_NAT_TYPES,
  matrixLabSpec,
  matrixPairs,
} from '../src/natlab/index.js';
import { lossRuleset, routerRuleset } from '../src/natlab/nat-types.js';

describe('NAT lab rules and expectations (no root needed)', () => {
  it('only a random-port mapping against an exact-port filter (or another random port) needs a relay', () => {
    const relayOnly = matrixPairs()
      .filter((p) => expectPair(p.a, p.b) === 'relay-only')
      .map((p) => p.id);
    assert.deepEqual(relayOnly, [
      'port-restricted<->symmetric',
      'symmetric<->symmetric',
      'symmetric<->port-restricted-accepting',
    ]);
    assert.equal(
      expectPair('symmetric', 'address-restricted'),
      'direct',
      'address filtering accepts any port of the peer',
    );
    assert.equal(expectPair('symmetric', 'full-cone'), 'direct');
    assert.equal(expectPair('port-restricted-accepting', 'port-restricted'), 'racy');
    assert.equal(expectPair('port-restricted-accepting', 'full-cone'), 'direct');
  });

  it('the legacy client is expected to work only between port-keeping NATs without collisions, never behind one NAT', () => {
    const legacyDirect = matrixPairs().filter((p) => expectationFor('legacy', p) === 'direct');
    assert.equal(legacyDirect.length, 10);
    assert.ok(
      legacyDirect.every(
        (p) => !['symmetric', 'port-restricted-accepting'].includes(p.a) && p.sameNat === undefined,
      ),
    );
    const same = matrixPairs().filter((p) => p.sameNat !== undefined);
    assert.ok(
      same.every(
        (p) => expectationFor('v2', p) === 'direct' && expectationFor('legacy', p) === 'relay-only',
      ),
    );
  });

  it('the v2 client is expected direct between symmetric-sequential and a port-keeping port-dependent filter (the sweep, measured), the legacy client not', () => {
    const pairs = matrixPairs(
      ['port-restricted', 'symmetric-sequential', 'fast-expiry', 'double-nat'],
      false,
    ).filter((p) => [p.a, p.b].includes('symmetric-sequential') && p.a !== p.b);
    assert.equal(pairs.length, 3);
    for (const p of pairs) {
      assert.equal(expectPair(p.a, p.b), 'racy', `${p.id} by RFC 4787 alone`);
      assert.equal(expectationFor('v2', p), 'direct', p.id);
      assert.notEqual(expectationFor('legacy', p), 'direct', p.id);
    }
  });

  it('the matrix lab fits the address plan: two sites per type plus the two same-NAT sites', () => {
    const spec = matrixLabSpec();
    assert.equal(spec.sites.length, 2 * MATRIX_NAT_TYPES.length + 2);
    assert.ok(spec.sites.length <= 15);
  });

  it('a symmetric router randomises ports, a port-restricted one does not, and only the accepting variant lets inbound in', () => {
    const base = {
      lanCidr: '192.0.2.0/28',
      publicAddress: '198.51.100.10',
      hosts: [{ address: '192.0.2.2', portRange: [20_000, 29_999] as const }],
      hairpin: false,
    };
    const sym = routerRuleset({ ...base, type: 'symmetric' });
    const pr = routerRuleset({ ...base, type: 'port-restricted' });
    const acc = routerRuleset({ ...base, type: 'port-restricted-accepting' });
    assert.match(sym, /-A POSTROUTING -o wan -j MASQUERADE --random-fully/);
    assert.doesNotMatch(pr, /random-fully/);
    assert.match(pr, /-A INPUT -i wan -j DROP/);
    assert.doesNotMatch(acc, /-A INPUT -i wan -j DROP/);
    assert.match(
      routerRuleset({ ...base, type: 'full-cone' }),
      /-A PREROUTING -i wan -p udp -j DNAT --to-destination 192\.0\.2\.2/,
    );
    assert.match(
      routerRuleset({ ...base, type: 'address-restricted' }),
      /--rcheck --rsource -j DNAT/,
    );
    const hairpin = routerRuleset({
      ...base,
      type: 'port-restricted',
      hairpin: true,
      hosts: [...base.hosts, { address: '192.0.2.3', portRange: [30_000, 39_999] as const }],
    });
    assert.match(
      hairpin,
      /-A PREROUTING -i lan -d 198\.51\.100\.10\/32 -p udp --dport 30000:39999 -j DNAT --to-destination 192\.0\.2\.3/,
    );
  });

  it('loss drops inbound before conntrack and outbound before NAT, and 0 removes it', () => {
    const lossy = lossRuleset(0.3);
    assert.match(
      lossy,
      /\*raw[\s\S]*-A PREROUTING -i wan -m statistic --mode random --probability 0\.3 -j DROP/,
    );
    assert.match(
      lossy,
      /\*mangle[\s\S]*-A POSTROUTING -o wan -m statistic --mode random --probability 0\.3 -j DROP/,
    );
    assert.doesNotMatch(lossRuleset(0), /statistic/);
  });
});
