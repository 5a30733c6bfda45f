import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createLab,
  DEFAULT_SERVER_PORT,
  type JsonLine,
  type Lab,
  type LabProcess,
  labNamespaces,
  labUnavailableReasons,
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
} from './godot4-support.js';

/**
 * Issue 21 point 12 with the Godot 4 addon in the NAT lab: three Godot players, each behind
 * its own port-restricted NAT. The host keeps its session open (keep_open_ms); two players
 * start it, a third joins after the start and is punched to both (peer_joined on both, its own
 * hole_punched naming both), and plays ENet with the host; its game is then killed and
 * started again under its name, and is punched to both once more. The host's late punches
 * leave from the punched port (through create_enet_peer's forwarder), the one its NAT mapped.
 */

const reasons = [...godot4UnavailableReasons(), ...(await labUnavailableReasons())];
const STEP_WAIT_MS = 25_000;
const measured: string[] = [];

const line = (what: string) => (l: JsonLine) => l.godot === what;
const joined = (peer: string) => (l: JsonLine) =>
  l.godot === 'signal' &&
  l.signal === 'peer_joined' &&
  (l.args as [{ name: string }])[0]?.name === peer;

describe('the Godot 4 addon in the NAT lab: a late joiner and a rejoin', {
  skip: skipUnless(reasons, 'Godot 4 in the NAT lab'),
}, () => {
  let lab: Lab | undefined;
  let server: LabProcess | undefined;
  const projects: Project[] = [];

  before(async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    lab = await createLab({
      sites: [
        { name: 'h', nat: 'port-restricted' },
        { name: 'j', nat: 'port-restricted' },
        { name: 'l', nat: 'port-restricted' },
      ],
    });
    // Started as the README does (autostart), like every lab test that tests no flag.
    server = await lab.startServer({ port: DEFAULT_SERVER_PORT, autostart: true });
    for (const name of ['h', 'j', 'l1', 'l2']) {
      projects.push(await makeProject(`late-${name}`, { from: LAB_DRIVER }));
    }
  });

  after(async () => {
    server?.kill();
    const prefix = lab?.prefix;
    await lab?.destroy();
    await removeProjects();
    if (prefix !== undefined)
      assert.deepEqual(await labNamespaces(`${prefix}-`), [], 'the lab left namespaces');
    process.stdout.write('\nlate join and rejoin in the NAT lab (Godot 4):\n');
    for (const m of measured) process.stdout.write(`  ${m}\n`);
  });

  it('a third Godot player joins a started open session through its NAT and is punched to both, then again after its game is killed', async () => {
    assert.ok(lab);
    const [hp, jp, l1p, l2p] = projects as [Project, Project, Project, Project];
    const base = {
      session: 'godot-lab-late',
      host: false,
      max_players: 3,
      after: 'enet',
      deadline_ms: 45_000,
    };
    const spawn = (at: string, project: Project, config: Record<string, unknown>) =>
      spawnLabGodot(lab as Lab, at, project, { ...base, ...config });
    const host = spawn('h', hp, {
      host: true,
      name: 'h',
      keep_open_ms: 120_000,
      finalize_at_lobby: 2,
      expect_late: 2,
    });
    assert.ok(await host.waitForLine(line('ready'), STEP_WAIT_MS), 'host ready');
    const first = spawn('j', jp, { name: 'j', expect_late: 2 });
    const trace = (p: LabProcess) => JSON.stringify(p.lines);
    const hostPunched = await host.waitForLine(line('punched'), STEP_WAIT_MS);
    if (hostPunched === undefined) {
      const j = await Promise.race([
        first.exited.then((r) => `exited ${r.code}: ${r.stderr.slice(-1500)}`),
        new Promise<string>((r) => setTimeout(() => r('still running'), 200)),
      ]);
      assert.fail(`host: ${trace(host)}; j: ${trace(first)} (${j})`);
    }
    assert.ok(await first.waitForLine(line('punched'), STEP_WAIT_MS), `j: ${trace(first)}`);

    const late = spawn('l', l1p, { name: 'late' });
    const latePunched = await late.waitForLine(line('punched'), STEP_WAIT_MS);
    assert.ok(latePunched, `late punched: ${JSON.stringify(late.lines.slice(-6))}`);
    const latePeers = (latePunched.result as { peers: { name: string; path: string }[] }).peers;
    assert.deepEqual(latePeers.map((p) => p.name).sort(), ['h', 'j'], 'reached both');
    for (const [who, p] of [
      ['host', host],
      ['j', first],
    ] as const) {
      const seen = await p.waitForLine(joined('late'), STEP_WAIT_MS);
      assert.ok(seen, `${who} peer_joined(late): ${JSON.stringify(p.lines.slice(-6))}`);
      measured.push(
        `${who}: late joiner reached by ${(seen.args as [{ path: string }])[0].path} path`,
      );
    }
    assert.ok(await late.waitForLine(line('rpc_ok'), STEP_WAIT_MS), 'late played ENet with h');
    measured.push(`late joiner: start_traversal -> hole_punched ${latePunched.elapsed_ms} ms`);
    late.kill();
    await late.exited;

    const back = spawn('l', l2p, { name: 'late' });
    const backPunched = await back.waitForLine(line('punched'), STEP_WAIT_MS);
    assert.ok(backPunched, `rejoin punched: ${JSON.stringify(back.lines.slice(-6))}`);
    measured.push(`rejoin: start_traversal -> hole_punched ${backPunched.elapsed_ms} ms`);
    const [hosted, firsted, backed] = await Promise.all([host.exited, first.exited, back.exited]);
    for (const [who, r] of [
      ['host', hosted],
      ['j', firsted],
      ['rejoined', backed],
    ] as const) {
      assert.deepEqual(scriptErrors(r.stderr), [], `${who}: GDScript errors`);
      assert.ok(r.lines.some(line('rpc_ok')), `${who}: no ENet RPC: ${JSON.stringify(r.lines)}`);
      assert.equal(r.code, 0, `${who}: ${JSON.stringify(r.lines.slice(-6))}`);
    }
    for (const [who, r] of [
      ['host', hosted],
      ['j', firsted],
    ] as const) {
      const times = r.lines.filter(joined('late'));
      assert.equal(times.length, 2, `${who} punched the late joiner twice`);
      // Port-restricted NATs keep their ports: direct both times, no relay.
      for (const t of times) {
        assert.notEqual((t.args as [{ path: string }])[0].path, 'relay', `${who}`);
      }
    }
    assert.equal(
      hosted.lines.find(line('rpc_ok'))?.pongs,
      3,
      'host: RPCs with j, late, late again',
    );
  });
});
