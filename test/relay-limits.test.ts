import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  killNamespaceProcesses,
  LAB_PREFIX,
  labUnavailableReasons,
  mustRun,
  runCommand,
  spawnJsonProcess,
} from '../src/natlab/index.js';
import { RELAY_REFUSAL_MESSAGES } from '../src/server/v2-relay.js';
import type { RelayOutcome, RelayPlan } from './relay-attack.js';
import { skipUnless } from './suites.js';

/**
 * Issue 24 through a live server: the CLI started as the README says (`holepunch-server 4000
 * y`, no flag) in a network namespace of the test's own (root), with 64 addresses of one IPv6
 * /64 and the IPv4 loopback block on its loopback; members are raw v2 sockets
 * (test/relay-attack.ts). The namespace and everything in it are removed afterwards.
 */

const CHILD = fileURLToPath(new URL('./relay-attack.js', import.meta.url));
const reasons = await labUnavailableReasons();
const skip = skipUnless(reasons, 'a network namespace of its own (root)');

/** The attacker's /64 (documentation space), the server's and the outside pair's addresses. */
const ATTACK_64 = '2001:db8:1:2::';
const SERVER_V6 = '2001:db8:ff::1';
const OUTSIDE_V6: [string, string] = ['2001:db8:3::1', '2001:db8:3::2'];

async function inNamespace(plan: RelayPlan, timeoutMs = 90_000): Promise<RelayOutcome> {
  const ns = `${LAB_PREFIX}${process.pid}-relay`;
  await mustRun(['ip', 'netns', 'add', ns]);
  try {
    await mustRun(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const v6 = [SERVER_V6, ...OUTSIDE_V6];
    for (let i = 1; i <= 64; i++) v6.push(`${ATTACK_64}${i.toString(16)}`);
    for (const address of v6) {
      await mustRun(['ip', '-n', ns, 'addr', 'add', `${address}/128`, 'dev', 'lo', 'nodad']);
    }
    const { process: child } = spawnJsonProcess(
      ['ip', 'netns', 'exec', ns, process.execPath, CHILD, JSON.stringify(plan)],
      timeoutMs,
    );
    const result = await child.exited;
    const outcome = result.lines.find((l) => l.scenario === plan.scenario);
    if (outcome === undefined) {
      throw new Error(
        `the relay scenario printed nothing (exit ${result.code ?? result.signal}${result.timedOut ? ', timed out' : ''}): ${result.stderr.slice(-3000)}`,
      );
    }
    return outcome as unknown as RelayOutcome;
  } finally {
    await killNamespaceProcesses(ns);
    await runCommand(['ip', 'netns', 'del', ns]);
  }
}

const v6Sessions = [0, 1].map((s) =>
  Array.from({ length: 32 }, (_, i) => `${ATTACK_64}${(s * 32 + i + 1).toString(16)}`),
);

describe('relay limits through the README server (root, a namespace of its own)', {
  skip,
  timeout: 300_000,
}, () => {
  it('one IPv6 /64 (64 addresses, two 32-member sessions asking every pair) holds at most half the relay ports; a relay-only pair from another source still gets a relay and exchanges datagrams', async (t) => {
    const o = await inNamespace({
      scenario: 'attack',
      server: SERVER_V6,
      sessions: v6Sessions,
      pair: OUTSIDE_V6,
      waitForLimitLog: true,
    });
    t.diagnostic(JSON.stringify(o));
    assert.ok((o.allocations ?? 0) <= 500, `the /64 holds ${o.allocations} of 1000 ports`);
    assert.ok((o.allocations ?? 0) >= 490, `and gets its share: ${o.allocations}`);
    assert.deepEqual(o.pair, { granted: true, aToB: true, bToA: true });
    // Refused with a clear message, counted by reason, logged once per interval.
    assert.ok(Object.keys(o.refusals ?? {}).includes(RELAY_REFUSAL_MESSAGES.source_full));
    for (const m of Object.keys(o.refusals ?? {})) {
      if (/relay/i.test(m))
        assert.ok(Object.values(RELAY_REFUSAL_MESSAGES).includes(m), `cut: ${m}`);
    }
    const line = o.limitLines?.[0] as { refusals?: Record<string, number> } | undefined;
    assert.ok((line?.refusals?.source_full ?? 0) > 0, JSON.stringify(o.limitLines));
    assert.ok((o.limitLines?.length ?? 0) <= 2, 'one line per 10 s, not one per request');
    assert.equal(o.memberRefusedLines, 0);
  });

  it('one IPv4 address (64 members from 127.0.0.2, two 32-member sessions asking every pair) holds at most half the relay ports; a relay-only pair from other IPv4 addresses still gets a relay and exchanges datagrams', async (t) => {
    const o = await inNamespace({
      scenario: 'attack',
      server: '127.0.0.1',
      sessions: [0, 1].map(() => Array.from({ length: 32 }, () => '127.0.0.2')),
      pair: ['127.0.0.3', '127.0.0.4'],
    });
    t.diagnostic(JSON.stringify(o));
    assert.ok((o.allocations ?? 0) <= 500, `127.0.0.2 holds ${o.allocations} of 1000 ports`);
    assert.deepEqual(o.pair, { granted: true, aToB: true, bToA: true });
  });

  it('a legitimate full 32-player lobby behind one address, every pair relayed (both sides ask), gets all 496 allocations on an otherwise idle server', async (t) => {
    const o = await inNamespace({
      scenario: 'legit',
      server: '127.0.0.1',
      sessions: [Array.from({ length: 32 }, () => '127.0.0.5')],
    });
    t.diagnostic(JSON.stringify(o));
    assert.deepEqual([o.allocations, o.refusals], [496, {}]);
  });

  it('a replayed relay_bind from another address does not move a bound side; the member’s re-bind from a new NAT mapping does', async (t) => {
    const o = await inNamespace({
      scenario: 'replay',
      server: '127.0.0.1',
      pair: ['127.0.0.10', '127.0.0.11'],
      attacker: '127.0.0.66',
    });
    t.diagnostic(JSON.stringify(o));
    assert.deepEqual(o.replay, {
      attackerGotData: false,
      memberGotDataBeforeMove: true,
      movedGotData: true,
      oldMappingGotDataAfterMove: false,
    });
  });
});
