import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CLIENT_CLI_PATH,
  createLab,
  DEFAULT_SERVER_PORT,
  type Lab,
  type LabProcess,
  labNamespaces,
  labUnavailableReasons,
  SERVER_ADDRESS,
} from '../src/natlab/index.js';
import {
  godot4Argv,
  godot4UnavailableReasons,
  makeProject,
  type Project,
  REPO_ROOT,
  removeProjects,
  scriptErrors,
  skipUnless,
} from './godot4-support.js';

/**
 * The Godot 4 addon in real Godot 4 inside the NAT lab (issue 14, point 5): a host behind one
 * port-restricted NAT, a joiner behind another, at 0 %, 10 % and 30 % loss on each router's
 * uplink. Two Godot players hand the punched path to ENet and round-trip an RPC both ways; a
 * Godot host also punches a Node joiner (holepunch-client) and answers its ping/pong with the
 * game's own socket. Prints start_traversal -> hole_punched per player.
 */

const DRIVER = join(REPO_ROOT, 'godot', 'tests', 'driver');
const PORT = DEFAULT_SERVER_PORT;
const DEADLINE_MS = 40_000;
const KILL_AFTER_MS = DEADLINE_MS + 10_000;

const reasons = [...godot4UnavailableReasons(), ...(await labUnavailableReasons())];
const timings: string[] = [];

describe('the Godot 4 addon in the NAT lab', {
  skip: skipUnless(reasons, 'Godot 4 in the NAT lab'),
}, () => {
  let lab: Lab | undefined;
  let server: LabProcess | undefined;
  const projects: Project[] = [];
  let counter = 0;

  before(async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    lab = await createLab({
      sites: [
        { name: 'a', nat: 'port-restricted' },
        { name: 'b', nat: 'port-restricted' },
      ],
    });
    server = await lab.startServer({ port: PORT, autostart: true });
    for (let i = 0; i < 2; i++) projects.push(await makeProject(`lab${i}`, { from: DRIVER }));
  });

  after(async () => {
    server?.kill();
    const prefix = lab?.prefix;
    await lab?.destroy();
    await removeProjects();
    if (prefix !== undefined)
      assert.deepEqual(await labNamespaces(`${prefix}-`), [], 'the lab left namespaces');
    process.stdout.write('\nstart_traversal -> hole_punched (NAT lab, port-restricted pair):\n');
    for (const t of timings) process.stdout.write(`  ${t}\n`);
  });

  const godot = (at: string, project: Project, config: Record<string, unknown>) => {
    assert.ok(lab);
    const full = {
      server: SERVER_ADDRESS,
      port: PORT,
      timeout_ms: 30_000,
      deadline_ms: DEADLINE_MS,
      ...config,
    };
    return lab.spawn(at, godot4Argv(project, { HP_DRIVER: JSON.stringify(full) }), {
      timeoutMs: KILL_AFTER_MS,
    });
  };

  async function prepare(loss: number): Promise<string> {
    assert.ok(lab);
    for (const site of ['a', 'b']) {
      await lab.flushConntrack(site);
      await lab.setLoss(site, loss);
    }
    return `godot4-lab-${++counter}`;
  }

  async function checkGodot(label: string, proc: LabProcess, final: string): Promise<void> {
    const result = await proc.exited;
    const trace = result.lines.map((l) => l.godot).join(' ');
    assert.deepEqual(scriptErrors(result.stderr), [], `${label}: GDScript errors`);
    const punched = result.lines.find((l) => l.godot === 'punched');
    assert.ok(punched !== undefined, `${label} did not punch: ${JSON.stringify(result.lines)}`);
    const res = punched.result as Record<string, unknown>;
    const peers = res.peers as { path: string; rtt_ms: number }[];
    timings.push(
      `${label}: ${punched.elapsed_ms} ms (punched ${res.elapsed_ms} ms + hand-over ${res.handover_ms} ms, path ${peers.map((p) => p.path).join(',')})`,
    );
    assert.ok(
      result.lines.some((l) => l.godot === final && l.ok !== false),
      `${label}: no ${final}: ${JSON.stringify(result.lines.filter((l) => l.godot !== 'ready'))}`,
    );
    assert.equal(result.code, 0, `${label}: exit code ${result.code}: ${trace}`);
  }

  for (const loss of [0, 0.1, 0.3]) {
    it(`two Godot players behind port-restricted NATs at ${loss * 100} % loss: ENet RPC both ways`, async () => {
      const session = await prepare(loss);
      const [hp, jp] = projects as [Project, Project];
      const host = godot('a', hp, { session, host: true, name: 'alice', after: 'enet' });
      await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
      const join = godot('b', jp, { session, host: false, name: 'bob', after: 'enet' });
      try {
        await Promise.all([host.exited, join.exited]);
        await checkGodot(`${loss * 100} % loss, Godot joiner`, join, 'rpc_ok');
        await checkGodot(`${loss * 100} % loss, Godot host`, host, 'rpc_ok');
      } finally {
        host.kill();
        join.kill();
      }
    });
  }

  it('a Godot host and a Node joiner behind port-restricted NATs at 0 % loss', async () => {
    assert.ok(lab);
    const session = await prepare(0);
    const host = godot('a', projects[0] as Project, {
      session,
      host: true,
      name: 'alice',
      after: 'udp_echo',
    });
    await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
    const join = lab.spawn(
      'b',
      [
        'node',
        CLIENT_CLI_PATH,
        'join',
        session,
        '--server',
        `${SERVER_ADDRESS}:${PORT}`,
        '--name',
        'bob',
        '--timeout',
        '30000',
        '--json',
      ],
      { timeoutMs: KILL_AFTER_MS },
    );
    try {
      const [, result] = await Promise.all([host.exited, join.exited]);
      assert.ok(
        result.lines.some((l) => l.event === 'punched'),
        `the Node joiner did not punch: ${JSON.stringify(result.lines)} ${result.stderr.slice(0, 1_000)}`,
      );
      await checkGodot('0 % loss, Godot host (Node joiner)', host, 'udp_test');
      const punched = result.lines.find((l) => l.event === 'punched');
      assert.ok(punched !== undefined, `the Node joiner did not punch: ${result.stderr}`);
      timings.push(`0 % loss, Node joiner (Godot host): ${punched.elapsedMs} ms`);
      assert.equal(result.code, 0, 'the Node joiner got answers from the Godot game socket');
    } finally {
      host.kill();
      join.kill();
    }
  });
});
