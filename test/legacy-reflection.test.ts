import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Endpoint } from '../src/protocol/endpoint.js';
import {
  LEGACY_MAX_PLAYERS,
  MAX_LEGACY_NAME_BYTES,
  MAX_LEGACY_NICKNAME_BYTES,
} from '../src/protocol/legacy.js';
import { createCounters } from '../src/server/counters.js';
import {
  LEGACY_ADDRESS_BURST_BYTES,
  LEGACY_ADDRESS_BYTES_PER_S,
  LegacySessions,
} from '../src/server/legacy-sessions.js';

/**
 * The legacy protocol cannot tell a forged source from a real one, so docs/security.md states
 * what a forger can still make the server send, as a ratio of bytes out to bytes in. This test
 * plays the strongest attacks we know against the session table on a fake clock and measures
 * that ratio; the bounds below are the ones the document states.
 */
const IP_UDP_HEADER_BYTES = 28;
/** docs/security.md: worst payload ratio, and the same with IPv4 + UDP headers counted. */
const STATED_PAYLOAD_RATIO = 120;
const STATED_WIRE_RATIO = 80;
const ATTACK_SECONDS = 60;

interface Tally {
  bytesIn: number;
  bytesOut: number;
  datagramsIn: number;
  datagramsOut: number;
  /** Bytes out per destination address. */
  readonly perAddress: Map<string, number>;
}

function attackBench(autostart: boolean) {
  const tally: Tally = {
    bytesIn: 0,
    bytesOut: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    perAddress: new Map(),
  };
  const counters = createCounters();
  let now = 0;
  const sessions = new LegacySessions({
    outbox: {
      send(to, data) {
        tally.bytesOut += data.length;
        tally.datagramsOut++;
        tally.perAddress.set(to.address, (tally.perAddress.get(to.address) ?? 0) + data.length);
      },
    },
    counters,
    autostart,
    maxSessions: 1_000_000,
  });
  const encoder = new TextEncoder();
  return {
    tally,
    counters,
    forge(from: Endpoint, message: string): void {
      const data = encoder.encode(message);
      tally.bytesIn += data.length;
      tally.datagramsIn++;
      sessions.handle(now, from, data);
    },
    /** Moves the clock on and runs what is due. */
    advance(ms: number): void {
      now += ms;
      while (sessions.nextDeadline() <= now) sessions.handleTimeout(now);
    },
    ratios() {
      return {
        payload: tally.bytesOut / tally.bytesIn,
        wire:
          (tally.bytesOut + tally.datagramsOut * IP_UDP_HEADER_BYTES) /
          (tally.bytesIn + tally.datagramsIn * IP_UDP_HEADER_BYTES),
      };
    },
  };
}

// Every victim its own address, so no per-address budget helps the server: the worst case.
let victimCounter = 0;
const victim = (): Endpoint => {
  victimCounter++;
  return {
    address: `10.${(victimCounter >> 16) & 255}.${(victimCounter >> 8) & 255}.${victimCounter & 255}`,
    port: 7,
  };
};
const nick = (i: number): string => `${i}`.padEnd(MAX_LEGACY_NICKNAME_BYTES, 'x');

/** `rs` and a full lobby of forged members, each with a maximal nickname. */
function fillSession(bench: ReturnType<typeof attackBench>, key: string): Endpoint[] {
  const members = Array.from({ length: LEGACY_MAX_PLAYERS }, victim);
  bench.forge(members[0] as Endpoint, `rs:${key}:${LEGACY_MAX_PLAYERS}`);
  members.forEach((m, i) => {
    bench.forge(m, `rc:${i}:${key}:${nick(i)}`);
  });
  return members;
}

/** One attack: what it sends, from forged sources, over `ATTACK_SECONDS` of fake time. */
interface Attack {
  readonly name: string;
  readonly autostart: boolean;
  run(bench: ReturnType<typeof attackBench>): void;
}

const SESSIONS = 40;
const ATTACKS: readonly Attack[] = [
  {
    name: "the issue's: a full lobby, then one member's rc 200 times",
    autostart: false,
    run(bench) {
      const members = fillSession(bench, 'BIG');
      for (let i = 0; i < 200; i++) bench.forge(members[1] as Endpoint, `rc:1:BIG:${nick(1)}`);
    },
  },
  {
    name: 'nickname flips, 100 a second, in full lobbies',
    autostart: false,
    run(bench) {
      const sessions = Array.from({ length: SESSIONS }, (_, i) => fillSession(bench, `F${i}`));
      for (let t = 0; t < ATTACK_SECONDS * 10; t++) {
        sessions.forEach((members, i) => {
          for (let k = 0; k < 10; k++) {
            bench.forge(members[2] as Endpoint, `rc:2:F${i}:${nick(t * 10 + k)}`);
          }
        });
        bench.advance(100);
      }
    },
  },
  {
    name: 'tiny leave and rejoin (cc:5, rc:5:K:z) once a second in full lobbies',
    autostart: false,
    run(bench) {
      const sessions = Array.from({ length: SESSIONS }, (_, i) => fillSession(bench, `C${i}`));
      for (let t = 0; t < ATTACK_SECONDS; t++) {
        sessions.forEach((members, i) => {
          bench.forge(members[5] as Endpoint, 'cc:5');
          bench.forge(members[5] as Endpoint, `rc:5:C${i}:z`);
        });
        bench.advance(1_000);
      }
    },
  },
  {
    name: 'lobbies of empty nicknames, churned: many small datagrams out',
    autostart: false,
    run(bench) {
      const sessions = Array.from({ length: SESSIONS }, (_, s) => {
        const members = Array.from({ length: LEGACY_MAX_PLAYERS }, victim);
        bench.forge(members[0] as Endpoint, `rs:E${s}:${LEGACY_MAX_PLAYERS}`);
        members.forEach((m, i) => {
          bench.forge(m, `rc:${i}:E${s}:`);
        });
        return members;
      });
      for (let t = 0; t < ATTACK_SECONDS; t++) {
        sessions.forEach((members) => {
          bench.forge(members[1] as Endpoint, 'cc:1');
          bench.forge(members[1] as Endpoint, 'cc:1');
        });
        sessions.forEach((members, s) => {
          bench.forge(members[1] as Endpoint, `rc:1:E${s}:`);
        });
        bench.advance(1_000);
      }
    },
  },
  {
    name: 'autostart: full lobbies of 64-byte names (rc:NAME:KEY), each ending in peers:',
    autostart: true,
    run(bench) {
      for (let s = 0; s < SESSIONS * 10; s++) {
        const members = Array.from({ length: LEGACY_MAX_PLAYERS }, victim);
        bench.forge(members[0] as Endpoint, `rs:A${s}:${LEGACY_MAX_PLAYERS}`);
        members.forEach((m, i) => {
          bench.forge(m, `rc:${`${i}`.padEnd(MAX_LEGACY_NAME_BYTES, 'n')}:A${s}`);
        });
      }
    },
  },
  {
    name: 'refusals: rc for no session (6 bytes in; ok: and a 50-byte close: out)',
    autostart: false,
    run(bench) {
      for (let i = 0; i < 10_000; i++) bench.forge(victim(), 'rc:a:b');
    },
  },
];

describe('legacy reflection: the worst ratio that remains is the one docs/security.md states', () => {
  const measured: { name: string; payload: number; wire: number }[] = [];

  for (const attack of ATTACKS) {
    test(attack.name, () => {
      const bench = attackBench(attack.autostart);
      attack.run(bench);
      const { payload, wire } = bench.ratios();
      measured.push({ name: attack.name, payload, wire });
      assert.ok(payload <= STATED_PAYLOAD_RATIO, `payload ratio ${payload.toFixed(1)}`);
      assert.ok(wire <= STATED_WIRE_RATIO, `wire ratio ${wire.toFixed(1)}`);
    });
  }

  test('the table in docs/security.md: the strongest attack comes close to the stated bound', () => {
    for (const m of measured) {
      console.log(`${m.name}: ${m.payload.toFixed(1)}x payload, ${m.wire.toFixed(1)}x wire`);
    }
    const worst = Math.max(...measured.map((m) => m.payload));
    assert.equal(measured.length, ATTACKS.length);
    // A bound far above every attack would say nothing: the test knows a near-worst attack.
    assert.ok(worst > STATED_PAYLOAD_RATIO * 0.75, `worst measured ${worst.toFixed(1)}x`);
  });

  test('one victim gets at most the per-address budget, however many sessions are aimed at it', () => {
    const bench = attackBench(false);
    const target: Endpoint = { address: '192.0.2.1', port: 80 };
    for (let s = 0; s < ATTACK_SECONDS; s++) {
      for (let i = 0; i < 200; i++) {
        const key = `T${s}-${i}`;
        bench.forge(victim(), `rs:${key}:${LEGACY_MAX_PLAYERS}`);
        bench.forge(target, `rc:t:${key}:${nick(i)}`);
        for (let m = 0; m < 4; m++) bench.forge(victim(), `rc:m${m}:${key}:${nick(m)}`);
      }
      bench.advance(1_000);
    }
    const received = bench.tally.perAddress.get(target.address) ?? 0;
    const bound = LEGACY_ADDRESS_BURST_BYTES + ATTACK_SECONDS * LEGACY_ADDRESS_BYTES_PER_S;
    assert.ok(received <= bound, `${received} > ${bound}`);
    assert.ok((bench.counters.rejections.reply_budget ?? 0) > 0);
  });
});
