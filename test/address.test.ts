import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { ipv4Octets, ipv6Groups, isUnicastAddress } from '../src/protocol/address.js';

/** A deterministic generator (the same cases every run). */
function lcg(seed: number) {
  let s = seed;
  return (k: number): number => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s % k;
  };
}

describe('IP literal parsing (protocol/address.ts)', () => {
  it('accepts exactly what net.isIP accepts, over 320,000 random and structured strings', () => {
    const rnd = lcg(7);
    const alphabet = '0123456789abcdefABCDEF:.%z';
    const cases: string[] = [];
    for (let i = 0; i < 150_000; i++) {
      let s = '';
      for (let j = rnd(20); j > 0; j--) s += alphabet[rnd(alphabet.length)];
      cases.push(s);
    }
    for (let i = 0; i < 150_000; i++) {
      const parts: string[] = [];
      for (let j = rnd(10); j > 0; j--) {
        if (rnd(6) === 0) parts.push('');
        else if (rnd(8) === 0) parts.push(`${rnd(300)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`);
        else
          parts.push(
            rnd(70_000)
              .toString(16)
              .slice(0, 1 + rnd(5)),
          );
      }
      let s = parts.join(':');
      if (rnd(4) === 0) s = `${rnd(2) ? '::' : ''}${s}${rnd(2) ? '::' : ''}`;
      if (rnd(10) === 0) s += `%${['eth0', '', 'a.b', '1:2', '$'][rnd(5)]}`;
      cases.push(s);
    }
    for (let i = 0; i < 20_000; i++) {
      const octet = () => (rnd(10) === 0 ? `0${rnd(10)}` : String(rnd(300)));
      cases.push([octet(), octet(), octet(), octet()].slice(0, 3 + rnd(3) - rnd(2)).join('.'));
    }
    let v6 = 0;
    let v4 = 0;
    for (const s of cases) {
      const family = isIP(s);
      if (family === 6) v6++;
      if (family === 4) v4++;
      assert.equal(ipv6Groups(s) !== undefined, family === 6, `ipv6Groups(${JSON.stringify(s)})`);
      assert.equal(ipv4Octets(s) !== undefined, family === 4, `ipv4Octets(${JSON.stringify(s)})`);
    }
    // The generator reaches both families often enough to mean something.
    assert.ok(v6 > 1000 && v4 > 1000, `${v6} IPv6 and ${v4} IPv4 literals among the cases`);
  });

  it('reads the groups of compressed, embedded-IPv4 and zoned literals', () => {
    assert.deepEqual(ipv6Groups('2001:DB8::1'), [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(ipv6Groups('::ffff:192.0.2.1'), [0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201]);
    assert.deepEqual(ipv6Groups('1::'), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(ipv6Groups('fe80::1%eth0'), [0xfe80, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(ipv4Octets('203.0.113.255'), [203, 0, 113, 255]);
    assert.equal(ipv6Groups('1.2.3.4::1'), undefined);
    assert.equal(ipv4Octets('203.0.113.07'), undefined);
  });

  it('takes unicast literals only', () => {
    for (const a of ['192.0.2.1', '2001:db8::1', '::ffff:198.51.100.7', 'fe80::1%eth0']) {
      assert.ok(isUnicastAddress(a), a);
    }
    for (const a of [
      '0.1.2.3',
      '224.0.0.1',
      '255.255.255.255',
      '::',
      'ff02::1',
      '::ffff:0.0.0.1',
    ]) {
      assert.ok(!isUnicastAddress(a), a);
    }
  });
});
