import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createLab,
  DEFAULT_SERVER_PORT,
  type Lab,
  type LabProcess,
  labNamespaces,
  labUnavailableReasons,
  SERVER_ADDRESS,
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
 * The Godot 4 addon in real Godot 4 inside the NAT lab (issue 14, point 5): a host behind one
 * port-restricted NAT, a joiner behind another, at 0 %, 10 % and 30 % loss on each router's
 * uplink. Two Godot players hand the punched path to ENet and round-trip an RPC both ways; a
 * Godot host also punches a Node joiner (holepunch-client) and answers its ping/pong with the
 * game's own socket. Prints start_traversal -> hole_punched per player.
 *
 * The relay (issue 14, points 3 and 5): two symmetric NATs (random ports on both sides) have
 * no direct path (a symmetric NAT against a port-restricted one has one since the addon
 * probes birthday-style: test/godot4-natlab-nat.test.ts); two Godot players there play
 * through the server's transparent relay with ENet unchanged, over several trials (each
 * site hosting and joining in turn). Issue 13's bound is checked on them: playing through the
 * relay within 1.5 s p50 / 3 s p99 at 0 % loss, the path settled before the hand-over to ENet.
 */

const reasons = [...godot4UnavailableReasons(), ...(await labUnavailableReasons())];
const timings: string[] = [];
/** Relay-only trials (0 % loss). */
const RELAY_TRIALS = 8;
/** Issue 13: a pair that is not direct plays through the relay within these (0 % loss). */
const RELAY_P50_MS = 1_500;
const RELAY_P99_MS = 3_000;

/** Nearest-rank percentile (with fewer than 100 samples, p99 is the largest). */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

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
        { name: 's', nat: 'symmetric' },
        { name: 't', nat: 'symmetric' },
      ],
    });
    server = await lab.startServer({ port: DEFAULT_SERVER_PORT, autostart: true });
    for (let i = 0; i < 2; i++) projects.push(await makeProject(`lab${i}`, { from: LAB_DRIVER }));
  });

  after(async () => {
    server?.kill();
    const prefix = lab?.prefix;
    await lab?.destroy();
    await removeProjects();
    if (prefix !== undefined)
      assert.deepEqual(await labNamespaces(`${prefix}-`), [], 'the lab left namespaces');
    process.stdout.write('\nstart_traversal -> hole_punched (NAT lab):\n');
    for (const t of timings) process.stdout.write(`  ${t}\n`);
  });

  const godot = (at: string, project: Project, config: Record<string, unknown>) => {
    assert.ok(lab);
    return spawnLabGodot(lab, at, project, config);
  };

  async function prepare(loss: number, sites = ['a', 'b']): Promise<string> {
    assert.ok(lab);
    for (const site of sites) {
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
    const rtts = result.lines.filter((l) => l.godot === 'rpc_pong').map((l) => l.rtt_ms);
    const redundancy = result.lines.find((l) => l.godot === 'redundancy');
    if (rtts.length > 0 || redundancy !== undefined)
      timings.push(
        `${label}: RPC round trips ${JSON.stringify(rtts)} ms${redundancy === undefined ? '' : `, forwarder ${JSON.stringify(redundancy.stats)}`}`,
      );
    assert.ok(
      result.lines.some((l) => l.godot === final && l.ok !== false),
      `${label}: no ${final}: ${JSON.stringify(result.lines.filter((l) => l.godot !== 'ready'))}`,
    );
    assert.equal(result.code, 0, `${label}: exit code ${result.code}: ${trace}`);
  }

  /**
   * Issue 14 at 30 %: 30 % on each uplink, both ways, is 51 % loss per direction and 76 % per
   * round trip, and ENet's own reliability gives out there (measured with tcpdump on both
   * routers): the host's ENet ignores a new peer until the peer's one-shot ack of
   * VERIFY_CONNECT arrives (repeated at 0.5, 1, 2, 4, 8, 16 s), and a reliable command's
   * retransmission wait doubles without cap on an ordered channel. The punched path holds.
   * The game opts into the addon's redundancy there (enet_redundancy = 3: each datagram sent
   * three times through a forwarder on the punched port, 13 % loss per direction, less than
   * the 10 % case's 19 %); the lab's loss is unchanged.
   */
  const REDUNDANCY: Readonly<Record<number, number>> = { 0.3: 3 };
  for (const loss of [0, 0.1, 0.3]) {
    it(`two Godot players behind port-restricted NATs at ${loss * 100} % loss: ENet RPC both ways`, async () => {
      const session = await prepare(loss);
      const [hp, jp] = projects as [Project, Project];
      const enet_redundancy = REDUNDANCY[loss] ?? 1;
      const host = godot('a', hp, {
        session,
        host: true,
        name: 'alice',
        after: 'enet',
        enet_redundancy,
      });
      await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
      const join = godot('b', jp, {
        session,
        host: false,
        name: 'bob',
        after: 'enet',
        enet_redundancy,
      });
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
    const join = spawnLabNodeJoiner(lab, 'b', session);
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
  it(`a relay-only pair (symmetric NATs on both sides) plays through the relay with ENet unchanged, ${RELAY_TRIALS} trials: within 1.5 s p50 / 3 s p99`, async () => {
    assert.ok(lab);
    const [p0, p1] = projects as [Project, Project];
    /** start_traversal -> hole_punched of the joiner (it starts last), and each side's peers -> hole_punched. */
    const joinerTotal: number[] = [];
    const fromPeers: number[] = [];
    const lines: string[] = [];
    for (let trial = 0; trial < RELAY_TRIALS; trial++) {
      const session = await prepare(0, ['s', 't']);
      // Site s hosts in even trials and joins in odd ones.
      const [hostSite, joinSite] = trial % 2 === 0 ? ['s', 't'] : ['t', 's'];
      const host = godot(hostSite, p0, { session, host: true, name: 'alice', after: 'enet' });
      await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
      const join = godot(joinSite, p1, { session, host: false, name: 'bob', after: 'enet' });
      try {
        const [h, j] = await Promise.all([host.exited, join.exited]);
        const side = (label: string, result: typeof h) => {
          assert.deepEqual(scriptErrors(result.stderr), [], `${label}: GDScript errors`);
          const punched = result.lines.find((l) => l.godot === 'punched');
          assert.ok(
            punched !== undefined,
            `${label} did not punch: ${JSON.stringify(result.lines)}`,
          );
          const res = punched.result as {
            local_port: number;
            punch_ms: number;
            handover_ms: number;
            host_address: string;
            host_port: number;
            peers: { path: string; address: string; port: number }[];
          };
          assert.equal(res.peers[0]?.path, 'relay', `${label}: ${JSON.stringify(res)}`);
          assert.equal(res.peers[0]?.address, SERVER_ADDRESS, `${label}: the relay's address`);
          assert.ok(
            result.lines.some((l) => l.godot === 'rpc_ok'),
            `${label}: no ENet RPC round trip through the relay: ${JSON.stringify(result.lines.filter((l) => l.godot !== 'ready'))}`,
          );
          assert.equal(result.code, 0, `${label}: exit code`);
          return { elapsed: Number(punched.elapsed_ms), res };
        };
        const hs = side(`trial ${trial} host at ${hostSite}`, h);
        const js = side(`trial ${trial} joiner at ${joinSite}`, j);
        const signal = j.lines.find((l) => l.signal === 'hole_punched')?.args;
        assert.deepEqual(
          signal,
          [js.res.local_port, js.res.peers[0]?.port, SERVER_ADDRESS],
          "the joiner's hole_punched names the relay (server address, relay port)",
        );
        joinerTotal.push(js.elapsed);
        fromPeers.push(hs.res.punch_ms + hs.res.handover_ms, js.res.punch_ms + js.res.handover_ms);
        lines.push(
          `trial ${trial} (s ${hostSite === 's' ? 'hosts' : 'joins'}): joiner ${js.elapsed} ms (peers -> punched ${js.res.punch_ms} + hand-over ${js.res.handover_ms}), host ${hs.elapsed} ms (${hs.res.punch_ms} + ${hs.res.handover_ms})`,
        );
      } finally {
        host.kill();
        join.kill();
      }
    }
    const summary = (label: string, v: number[]) =>
      `${label}: p50 ${percentile(v, 50)} ms, p99 ${percentile(v, 99)} ms (n=${v.length}, min ${Math.min(...v)}, max ${Math.max(...v)})`;
    timings.push('relay-only pair (symmetric vs symmetric), 0 % loss, ENet through the relay:');
    for (const l of lines) timings.push(`  ${l}`);
    timings.push(`  ${summary('joiner start_traversal -> hole_punched', joinerTotal)}`);
    timings.push(`  ${summary('either side, peer list -> hole_punched', fromPeers)}`);
    for (const [label, v] of [
      ['joiner start_traversal -> hole_punched', joinerTotal],
      ['peer list -> hole_punched', fromPeers],
    ] as const) {
      assert.ok(
        percentile(v, 50) <= RELAY_P50_MS,
        `${label}: p50 ${percentile(v, 50)} ms over the issue's ${RELAY_P50_MS} ms: ${v}`,
      );
      assert.ok(
        percentile(v, 99) <= RELAY_P99_MS,
        `${label}: p99 ${percentile(v, 99)} ms over the issue's ${RELAY_P99_MS} ms: ${v}`,
      );
    }
  });
});
