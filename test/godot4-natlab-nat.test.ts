import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createLab,
  DEFAULT_SERVER_PORT,
  type Lab,
  labNamespaces,
  labUnavailableReasons,
  type ProcessResult,
} from '../src/natlab/index.js';
import {
  godot4UnavailableReasons,
  LAB_DRIVER,
  makeProject,
  type Project,
  removeProjects,
  scriptErrors,
  skipUnless,
  spawnLabGodot,
  spawnLabNodeJoiner,
} from './godot4-support.js';

/**
 * The Godot 4 addon's NAT classes in the NAT lab (docs/protocol-v2.md §6, "Strategy from both
 * NAT classes"): behind a `symmetric` NAT (random ports, class `edm-random`) against a
 * `port-restricted` one (`eim`, a port-dependent filter) there is no direct path by plain
 * punching; birthday probing makes one. The relay is off on both sides, so every success is
 * direct: the Godot player measures its class, sends it, reads the peer's, and probes as the
 * hard side (256 extra sockets, the winner's port handed to the game) or as the easy side
 * (random ports of the peer), against the Node client and against another Godot player with
 * ENet on the punched ports. Behind a `symmetric-sequential` NAT (`edm-sequential`) against
 * `port-restricted` the easy side sweeps ±64 ports (§6, "Sweep") and the sequential side
 * predicts nothing: both roles against the Node client. Prints start_traversal ->
 * hole_punched per player.
 */

/** Trials per scenario (roles as stated in each test). */
const TRIALS = 2;
/**
 * The spec's classification calls two random ports at most 64 apart `edm-sequential`
 * (docs/protocol-v2.md §6): measured on the lab's symmetric NAT, 1 socket in 400 (public
 * ports 1029-65495). Such a player is not a birthday pair's hard side by the spec's own rule:
 * a trial where the Godot player behind `symmetric` measured that is checked to have done
 * what the spec says (sequential-hard, no direct path, `punch_failed` with the relay off),
 * reported, and replaced by one more trial, at most this many times per test.
 */
const MAX_MISCLASSIFIED = 1;

const reasons = [...godot4UnavailableReasons(), ...(await labUnavailableReasons())];
const timings: string[] = [];

interface GodotResult {
  local_port: number;
  elapsed_ms: number;
  punch_ms: number;
  handover_ms: number;
  nat: string;
  peers: {
    name: string;
    path: string;
    address: string;
    port: number;
    nat: string;
    strategy: string;
  }[];
}

describe('the Godot 4 addon behind a random-port NAT in the NAT lab (birthday probing)', {
  skip: skipUnless(reasons, 'Godot 4 in the NAT lab'),
}, () => {
  let lab: Lab | undefined;
  const projects: Project[] = [];
  let counter = 0;

  before(async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    lab = await createLab({
      sites: [
        { name: 'a', nat: 'port-restricted' },
        { name: 's', nat: 'symmetric' },
        { name: 'q', nat: 'symmetric-sequential' },
      ],
    });
    // Started as the README does: its default alternate port (port + 1) is what classification
    // needs, with no flag.
    await lab.startServer({ port: DEFAULT_SERVER_PORT, autostart: true });
    for (let i = 0; i < 2; i++) projects.push(await makeProject(`nat${i}`, { from: LAB_DRIVER }));
  });

  after(async () => {
    const prefix = lab?.prefix;
    await lab?.destroy();
    await removeProjects();
    if (prefix !== undefined)
      assert.deepEqual(await labNamespaces(`${prefix}-`), [], 'the lab left namespaces');
    process.stdout.write(
      '\nstart_traversal -> hole_punched (NAT lab, symmetric or symmetric-sequential vs port-restricted, no relay):\n',
    );
    for (const t of timings) process.stdout.write(`  ${t}\n`);
  });

  const godot = (at: string, project: Project, config: Record<string, unknown>) => {
    assert.ok(lab);
    return spawnLabGodot(lab, at, project, { use_relay: false, ...config });
  };

  const nodeJoiner = (at: string, session: string) => {
    assert.ok(lab);
    return spawnLabNodeJoiner(lab, at, session, ['--no-relay']);
  };

  async function prepare(): Promise<string> {
    assert.ok(lab);
    for (const site of ['a', 's', 'q']) {
      await lab.flushConntrack(site);
      await lab.setLoss(site, 0);
    }
    return `godot4-nat-${++counter}`;
  }

  /** A Godot player's result, checked: no script error, punched, `final` reached, exit 0. */
  function godotSide(label: string, result: ProcessResult, final: string): GodotResult {
    assert.deepEqual(scriptErrors(result.stderr), [], `${label}: GDScript errors`);
    const punched = result.lines.find((l) => l.godot === 'punched');
    assert.ok(punched !== undefined, `${label} did not punch: ${JSON.stringify(result.lines)}`);
    const res = punched.result as unknown as GodotResult;
    assert.ok(
      result.lines.some((l) => l.godot === final && l.ok !== false),
      `${label}: no ${final}: ${JSON.stringify(result.lines.filter((l) => l.godot !== 'ready'))}`,
    );
    assert.equal(result.code, 0, `${label}: exit code ${result.code}`);
    const signal = result.lines.find((l) => l.signal === 'hole_punched')?.args as number[];
    assert.equal(signal?.[0], res.local_port, `${label}: hole_punched names the game's port`);
    timings.push(
      `${label}: ${punched.elapsed_ms} ms (punched ${res.elapsed_ms} ms, of it peers -> punched ${res.punch_ms} ms, + hand-over ${res.handover_ms} ms), nat ${res.nat}, ${res.peers.map((p) => `path ${p.path}, strategy ${p.strategy}, peer nat ${p.nat}`).join('; ')}, local port ${res.local_port}`,
    );
    return res;
  }

  /**
   * True when the Godot player behind `symmetric` measured `edm-sequential` (two random
   * ports within 64): then it must have failed as the spec says (no birthday without the
   * `edm-random` class, the relay off).
   */
  function misclassified(label: string, result: ProcessResult, at: string): boolean {
    const nat = result.lines.find((l) => l.godot === 'nat')?.nat;
    if (at !== 's' || nat !== 'edm-sequential') return false;
    const failed = result.lines.find((l) => l.signal === 'traversal_failed')?.args as string[];
    assert.equal(failed?.[0], 'punch_failed', `${label}: measured edm-sequential, then ${failed}`);
    timings.push(
      `${label}: measured edm-sequential (two random ports within 64), punch_failed as the spec says; trial replaced`,
    );
    return true;
  }

  /** Each site's class: `a` port-restricted, `s` symmetric, `q` symmetric-sequential. */
  const CLASS_AT: Readonly<Record<string, string>> = {
    a: 'eim',
    s: 'edm-random',
    q: 'edm-sequential',
  };
  const STRATEGY: Readonly<Record<string, string>> = {
    's-a': 'birthday-hard',
    'a-s': 'birthday-easy',
    'q-a': 'sequential-hard',
    'a-q': 'sequential-easy',
  };

  /** What a Godot player at `at` measured and chose against its peer at `peerAt`. */
  function checkClasses(label: string, res: GodotResult, at: string, peerAt: string): void {
    assert.equal(res.nat, CLASS_AT[at], `${label}: our measured class`);
    assert.equal(res.peers.length, 1, label);
    assert.equal(res.peers[0]?.nat, CLASS_AT[peerAt], `${label}: the peer's class`);
    assert.equal(res.peers[0]?.strategy, STRATEGY[`${at}-${peerAt}`], `${label}: the strategy`);
    assert.notEqual(res.peers[0]?.path, 'relay', `${label}: direct`);
  }

  const VS_NODE = [
    { godotAt: 's', nodeAt: 'a', what: 'as the hard (symmetric) side', how: 'birthday probing' },
    {
      godotAt: 'a',
      nodeAt: 's',
      what: 'as the easy side against symmetric',
      how: 'birthday probing',
    },
    { godotAt: 'q', nodeAt: 'a', what: 'behind a sequential NAT', how: 'the Node side sweeping' },
    {
      godotAt: 'a',
      nodeAt: 'q',
      what: 'as the easy side against a sequential NAT',
      how: 'its sweep',
    },
  ];
  for (const { godotAt, nodeAt, what, how } of VS_NODE) {
    it(`a Godot host ${what} and a Node joiner connect directly by ${how}, relay off, game datagrams both ways (${TRIALS} trials)`, async () => {
      const birthday = godotAt === 's' || nodeAt === 's';
      let replaced = 0;
      for (let trial = 0; trial < TRIALS + replaced; trial++) {
        const session = await prepare();
        const host = godot(godotAt, projects[0] as Project, {
          session,
          host: true,
          name: 'alice',
          after: 'udp_echo',
        });
        await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
        const join = nodeJoiner(nodeAt, session);
        try {
          const [h, j] = await Promise.all([host.exited, join.exited]);
          const label = `trial ${trial}, Godot host at ${godotAt}`;
          if (replaced < MAX_MISCLASSIFIED && misclassified(label, h, godotAt)) {
            replaced++;
            continue;
          }
          const res = godotSide(label, h, 'udp_test');
          checkClasses(label, res, godotAt, nodeAt);
          const punched = j.lines.find((l) => l.event === 'punched');
          assert.ok(
            punched !== undefined,
            `the Node joiner did not punch: ${JSON.stringify(j.lines)} ${j.stderr.slice(0, 1_000)}`,
          );
          const nodePath = (punched.peers as { path: string }[])[0]?.path;
          timings.push(
            `trial ${trial}, Node joiner at ${nodeAt}: ${punched.elapsedMs} ms, path ${nodePath}`,
          );
          assert.equal(j.code, 0, 'the Node joiner got answers from the Godot game socket');
          if (birthday)
            assert.ok(
              [res.peers[0]?.path, nodePath].includes('birthday'),
              `${label}: birthday on at least one side (Godot ${res.peers[0]?.path}, Node ${nodePath})`,
            );
        } finally {
          host.kill();
          join.kill();
        }
      }
    });
  }

  it(`two Godot players, symmetric vs port-restricted, relay off: birthday probing, then ENet RPC both ways on the punched ports (${2 * TRIALS} trials, the symmetric side hosting and joining in turn; the last with enet_redundancy 2)`, async () => {
    const [p0, p1] = projects as [Project, Project];
    let replaced = 0;
    for (let trial = 0; trial < 2 * TRIALS + replaced; trial++) {
      const session = await prepare();
      const [hostAt, joinAt] = trial % 2 === 0 ? ['s', 'a'] : ['a', 's'];
      const enet_redundancy = trial === 2 * TRIALS + replaced - 1 ? 2 : 1;
      const common = { session, after: 'enet', enet_redundancy };
      const host = godot(hostAt, p0, { ...common, host: true, name: 'alice' });
      await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
      const join = godot(joinAt, p1, { ...common, host: false, name: 'bob' });
      try {
        const [h, j] = await Promise.all([host.exited, join.exited]);
        const hl = `trial ${trial}, Godot host at ${hostAt}${enet_redundancy > 1 ? ' (enet_redundancy 2)' : ''}`;
        const jl = `trial ${trial}, Godot joiner at ${joinAt}${enet_redundancy > 1 ? ' (enet_redundancy 2)' : ''}`;
        const [hardLabel, hard] = hostAt === 's' ? [hl, h] : [jl, j];
        if (replaced < MAX_MISCLASSIFIED && misclassified(hardLabel, hard, 's')) {
          replaced++;
          continue;
        }
        const hs = godotSide(hl, h, 'rpc_ok');
        const js = godotSide(jl, j, 'rpc_ok');
        checkClasses(hl, hs, hostAt, joinAt);
        checkClasses(jl, js, joinAt, hostAt);
        assert.ok(
          [hs.peers[0]?.path, js.peers[0]?.path].includes('birthday'),
          `trial ${trial}: birthday on at least one side (${hs.peers[0]?.path}, ${js.peers[0]?.path})`,
        );
      } finally {
        host.kill();
        join.kill();
      }
    }
  });
});
