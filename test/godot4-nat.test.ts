import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  BIRTHDAY_CANDIDATE,
  BIRTHDAY_HARD_INTERVAL_MS,
  BIRTHDAY_HARD_ROUNDS,
  BIRTHDAY_PROBE_BUDGET,
  BIRTHDAY_PROBE_RATE,
  BIRTHDAY_SOCKETS,
  BIRTHDAY_TICK_MS,
  PUNCH_INTERVAL_MS,
  PUNCH_LINGER_MS,
  SWEEP_EVERY_ROUNDS,
  SWEEP_PORT_RANGE,
} from '../src/client/punch.js';
import {
  BIRTHDAY_RELAY_DELAY_MS,
  CLASSIFY_MAX_PROBES,
  CLASSIFY_RETRY_MS,
  CLASSIFY_WITHIN_MS,
  COLLIDE_PROBES,
  COLLIDE_WAIT_MAX_MS,
  COLLIDE_WAIT_RTTS,
  natClassOf,
  peerStrategy,
  SEQUENTIAL_PORT_DELTA,
  SEQUENTIAL_RELAY_DELAY_MS,
} from '../src/client/traversal.js';
import type { NatClass } from '../src/protocol/v2.js';
import {
  godot4Argv,
  godot4UnavailableReasons,
  makeProject,
  REPO_ROOT,
  removeProjects,
  scriptErrors,
  skipUnless,
  spawnJson,
} from './godot4-support.js';

/**
 * The addon classifies its NAT and picks its strategy as the TypeScript core does
 * (docs/protocol-v2.md §6, "Strategy from both NAT classes"): godot/tests/check_nat.gd runs
 * the addon's traversal in real Godot 4 against a fake server, with the TypeScript core's
 * constants, `natClassOf` and `peerStrategy` as the expectations. It checks that the
 * host/join the addon sends carries the class its two probes measured, the birthday sockets
 * (hard side), the birthday probes (easy side), and the sweep.
 */

const CLASSES: readonly NatClass[] = ['unknown', 'eim', 'edm-sequential', 'edm-random'];

function expectations() {
  const constants = {
    BIRTHDAY_CANDIDATE,
    BIRTHDAY_HARD_INTERVAL_MS,
    BIRTHDAY_HARD_ROUNDS,
    BIRTHDAY_PROBE_BUDGET,
    BIRTHDAY_PROBE_RATE,
    BIRTHDAY_RELAY_DELAY_MS,
    BIRTHDAY_SOCKETS,
    BIRTHDAY_TICK_MS,
    CLASSIFY_MAX_PROBES,
    CLASSIFY_RETRY_MS,
    CLASSIFY_WITHIN_MS,
    COLLIDE_PROBES,
    COLLIDE_WAIT_MAX_MS,
    COLLIDE_WAIT_RTTS,
    PUNCH_INTERVAL_MS,
    PUNCH_LINGER_MS,
    SEQUENTIAL_PORT_DELTA,
    SEQUENTIAL_RELAY_DELAY_MS,
    SWEEP_EVERY_ROUNDS,
    SWEEP_PORT_RANGE,
  };
  const ports: [number, number][] = [
    [40_000, 40_000],
    [40_000, 40_001],
    [40_000, 40_000 + SEQUENTIAL_PORT_DELTA],
    [40_000 + SEQUENTIAL_PORT_DELTA, 40_000],
    [40_000, 40_001 + SEQUENTIAL_PORT_DELTA],
    [1_024, 65_535],
  ];
  const classes = ports.map(([a, b]) => [a, b, natClassOf(a, b)]);
  const strategies: [NatClass, NatClass, number, string][] = [];
  for (const own of CLASSES)
    for (const peer of CLASSES)
      for (const count of [1, 2])
        strategies.push([own, peer, count, peerStrategy(own, peer, count)]);
  return { constants, classes, strategies };
}

const reasons = godot4UnavailableReasons();

describe('the addon’s NAT classes and strategy in real Godot 4', {
  skip: skipUnless(reasons, 'Godot 4'),
}, () => {
  after(removeProjects);

  it('sends the class it measured, and chooses per peer as the TypeScript core does', async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    const project = await makeProject('nat', {
      extra: [[join(REPO_ROOT, 'godot', 'tests'), 'tests']],
    });
    const proc = spawnJson(
      godot4Argv(project, { HP_NAT_EXPECT: JSON.stringify(expectations()) }, [
        '--script',
        'res://tests/check_nat.gd',
      ]),
      60_000,
    );
    const result = await proc.exited;
    const summary = proc.lines.find((l) => l.godot === 'nat' && l.passed !== undefined);
    const failures = proc.lines.filter((l) => l.godot === 'nat_failed');
    assert.deepEqual(scriptErrors(result.stderr), [], 'GDScript errors');
    assert.deepEqual(failures, [], 'checks the addon fails');
    assert.ok(summary !== undefined, `no summary line: ${result.stderr.slice(0, 2_000)}`);
    assert.equal(summary.failed, 0);
    assert.ok(Number(summary.passed) >= 70, `only ${summary.passed} checks ran`);
    assert.equal(result.code, 0);
    process.stdout.write(
      `# addon NAT strategy: ${summary.passed} checks passed in ${summary.engine}\n`,
    );
  });
});
