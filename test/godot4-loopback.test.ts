import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLIENT_CLI_PATH, findCliLine, isCliEvent } from '../src/cli/index.js';
import {
  godot4Argv,
  godot4UnavailableReasons,
  type JsonLine,
  makeProject,
  type Proc,
  REPO_ROOT,
  removeProjects,
  scriptErrors,
  skipUnless,
  spawnJson,
  startLoopbackServer,
} from './godot4-support.js';

/**
 * The Godot 4 addon in real Godot 4 on loopback (the chroot shares this network namespace),
 * against our server (issue 14, point 5): a Godot host with a Node joiner (holepunch-client
 * CLI) and the reverse, where the Godot side runs the CLI's ping/pong on the released port
 * with its own PacketPeerUDP; 2 and 4 Godot players that hand the punched path to ENet and
 * round-trip an RPC both ways. Prints start_traversal -> hole_punched per player.
 *
 * The relay (issue 14, point 3): with the driver's drop_direct, the addon's socket drops every
 * datagram to or from anything but the server's main port and its relay ports, so no direct
 * path exists; the players are then reported with path "relay" at the server's address and a
 * relay port, and ENet (or the game's own socket) plays through the relay unchanged.
 */

const DRIVER = join(REPO_ROOT, 'godot', 'tests', 'driver');
const PLAYER_DEADLINE_MS = 25_000;
const KILL_AFTER_MS = PLAYER_DEADLINE_MS + 10_000;

const reasons = godot4UnavailableReasons();
const timings: string[] = [];

interface GodotPlayer {
  readonly name: string;
  readonly host: boolean;
  readonly after: 'enet' | 'udp_echo' | 'none';
  readonly maxPlayers?: number;
  /** The addon's socket talks to the server (main and relay ports) only. */
  readonly dropDirect?: boolean;
  /** The addon's enet_redundancy (copies of each ENet datagram; default 1). */
  readonly redundancy?: number;
}

let sessionCounter = 0;

async function spawnGodot(server: number, session: string, p: GodotPlayer): Promise<Proc> {
  const project = await makeProject(`loop-${p.name}`, { from: DRIVER });
  const config = {
    server: '127.0.0.1',
    port: server,
    session,
    host: p.host,
    name: p.name,
    nickname: p.name.toUpperCase(),
    max_players: p.maxPlayers ?? 2,
    after: p.after,
    drop_direct: p.dropDirect === true,
    enet_redundancy: p.redundancy ?? 1,
    timeout_ms: 20_000,
    deadline_ms: PLAYER_DEADLINE_MS,
  };
  return spawnJson(godot4Argv(project, { HP_DRIVER: JSON.stringify(config) }), KILL_AFTER_MS);
}

function spawnCli(server: number, session: string, host: boolean, name: string): Proc {
  return spawnJson(
    [
      'node',
      CLIENT_CLI_PATH,
      host ? 'host' : 'join',
      session,
      '--server',
      `127.0.0.1:${server}`,
      '--name',
      name,
      '--timeout',
      '20000',
      '--json',
    ],
    KILL_AFTER_MS,
  );
}

/** The Godot player's punched line, checked; records its time. */
async function checkGodot(label: string, proc: Proc, finalLine: string): Promise<JsonLine> {
  const result = await proc.exited;
  const trace = proc.lines.map((l) => l.godot ?? l.event).join(' ');
  assert.deepEqual(scriptErrors(result.stderr), [], `${label}: GDScript errors`);
  assert.ok(!result.timedOut, `${label} overran its deadline: ${trace}`);
  const punched = proc.lines.find((l) => l.godot === 'punched');
  assert.ok(punched !== undefined, `${label} did not punch: ${JSON.stringify(proc.lines)}`);
  const signal = proc.lines.find((l) => l.signal === 'hole_punched');
  const args = signal?.args as [number, number, string];
  const res = punched.result as Record<string, unknown>;
  assert.equal(args[0], res.local_port, `${label}: my_port is the punched local port`);
  assert.ok(
    proc.lines.some((l) => l.godot === finalLine && l.ok !== false),
    `${label}: no ${finalLine}: ${JSON.stringify(proc.lines.slice(-6))}`,
  );
  assert.equal(result.code, 0, `${label} exit code: ${trace}`);
  timings.push(
    `${label}: start_traversal -> hole_punched ${punched.elapsed_ms} ms (punched ${res.elapsed_ms} ms + port hand-over ${res.handover_ms} ms)`,
  );
  return punched;
}

async function checkCli(label: string, proc: Proc): Promise<void> {
  const result = await proc.exited;
  const punched = findCliLine(proc.lines, 'client', 'punched');
  assert.ok(punched !== undefined, `${label} did not punch: ${JSON.stringify(proc.lines)}`);
  const rtt = proc.lines.filter((l) => isCliEvent(l, 'client', 'rtt'));
  assert.ok(
    rtt.length > 0 && rtt.every((l) => l.received > 0),
    `${label}: no answer on the punched path from the Godot game's own socket: ${JSON.stringify(rtt)}`,
  );
  assert.equal(result.code, 0, `${label} exit code`);
  timings.push(`${label}: startTraversal -> punched ${punched.elapsedMs} ms`);
}

describe('the Godot 4 addon on loopback', { skip: skipUnless(reasons, 'Godot 4') }, () => {
  let server: Awaited<ReturnType<typeof startLoopbackServer>> | undefined;
  const procs: Proc[] = [];

  before(async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    server = await startLoopbackServer();
  });

  after(async () => {
    for (const p of procs) p.kill();
    server?.proc.kill();
    await server?.proc.exited;
    await removeProjects();
    process.stdout.write(
      '\nstart_traversal -> hole_punched (loopback; a host waits for its joiners):\n',
    );
    for (const t of timings) process.stdout.write(`  ${t}\n`);
  });

  const session = () => `godot4-loop-${process.pid}-${++sessionCounter}`;

  it('a Godot host and a Node joiner punch; the game socket answers on the released port', async () => {
    assert.ok(server);
    const s = session();
    const host = await spawnGodot(server.port, s, { name: 'ghost', host: true, after: 'udp_echo' });
    procs.push(host);
    await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
    const join = spawnCli(server.port, s, false, 'njoin');
    procs.push(join);
    await checkGodot('Godot host (Node joiner)', host, 'udp_test');
    await checkCli('Node joiner (Godot host)', join);
  });

  it('a Node host and a Godot joiner punch; the game socket answers on the released port', async () => {
    assert.ok(server);
    const s = session();
    const host = spawnCli(server.port, s, true, 'nhost');
    procs.push(host);
    await host.waitForLine((l) => l.event === 'registered', 15_000);
    const join = await spawnGodot(server.port, s, {
      name: 'gjoin',
      host: false,
      after: 'udp_echo',
    });
    procs.push(join);
    const punched = await checkGodot('Godot joiner (Node host)', join, 'udp_test');
    const res = punched.result as Record<string, unknown>;
    assert.equal(res.host_address, '127.0.0.1');
    await checkCli('Node host (Godot joiner)', host);
  });

  it('a join under a name the session already has fails with name_taken, as both signals say', async () => {
    assert.ok(server);
    const s = session();
    const host = await spawnGodot(server.port, s, { name: 'alice', host: true, after: 'none' });
    procs.push(host);
    await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
    const join = await spawnGodot(server.port, s, { name: 'alice', host: false, after: 'none' });
    procs.push(join);
    const result = await join.exited;
    host.kill();
    assert.deepEqual(scriptErrors(result.stderr), [], 'GDScript errors');
    const failed = join.lines.find((l) => l.signal === 'traversal_failed');
    const unsuccessful = join.lines.find((l) => l.signal === 'return_unsuccessful');
    assert.equal(
      (failed?.args as string[] | undefined)?.[0],
      'name_taken',
      JSON.stringify(join.lines),
    );
    assert.equal(
      (unsuccessful?.args as string[] | undefined)?.[0],
      (failed?.args as string[] | undefined)?.[1],
    );
    assert.ok(!join.lines.some((l) => l.signal === 'hole_punched'));
  });

  it('relay: a Godot host that no direct path reaches and a Node joiner play through the relay', async () => {
    assert.ok(server);
    const s = session();
    const host = await spawnGodot(server.port, s, {
      name: 'rhost',
      host: true,
      after: 'udp_echo',
      dropDirect: true,
    });
    procs.push(host);
    await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
    const join = spawnCli(server.port, s, false, 'rjoin');
    procs.push(join);
    const punched = await checkGodot('relay: Godot host (Node joiner)', host, 'udp_test');
    await checkCli('relay: Node joiner (Godot host)', join);
    const res = punched.result as { peers: { address: string; port: number; path: string }[] };
    const [peer] = res.peers;
    assert.equal(peer?.path, 'relay', JSON.stringify(res));
    assert.equal(peer?.address, '127.0.0.1');
    assert.notEqual(peer?.port, server.port, 'a relay port, not the main one');
    const cli = join.lines.find((l) => l.event === 'punched') as {
      peers: { path: string; address: string; port: number }[];
      hostAddress: string;
      hostPort: number;
    };
    assert.equal(cli.peers[0]?.path, 'relay', JSON.stringify(cli));
    assert.equal(cli.hostPort, cli.peers[0]?.port);
    assert.equal(cli.peers[0]?.port, peer?.port, 'one relay port per pair');
  });

  for (const redundancy of [1, 2]) {
    it(`relay: two Godot players without a direct path, ENet connects through the relay and an RPC round-trips both ways${redundancy > 1 ? `, each ENet datagram sent ${redundancy} times` : ''}`, async () => {
      assert.ok(server);
      const s = session();
      const host = await spawnGodot(server.port, s, {
        name: 'rg0',
        host: true,
        after: 'enet',
        dropDirect: true,
        redundancy,
      });
      procs.push(host);
      await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
      const join = await spawnGodot(server.port, s, {
        name: 'rg1',
        host: false,
        after: 'enet',
        dropDirect: true,
        redundancy,
      });
      procs.push(join);
      const joined = await checkGodot('relay: 2 Godot players, joiner', join, 'rpc_ok');
      const hosted = await checkGodot('relay: 2 Godot players, host', host, 'rpc_ok');
      type Res = {
        local_port: number;
        host_address: string;
        host_port: number;
        peers: { address: string; port: number; path: string }[];
      };
      const j = joined.result as Res;
      const h = hosted.result as Res;
      assert.equal(j.peers[0]?.path, 'relay', JSON.stringify(j));
      assert.equal(h.peers[0]?.path, 'relay', JSON.stringify(h));
      // The joiner's hole_punched names the relay: the server's address and the relay port.
      const signal = join.lines.find((l) => l.signal === 'hole_punched')?.args as [
        number,
        number,
        string,
      ];
      assert.deepEqual(signal, [j.local_port, j.peers[0]?.port, '127.0.0.1']);
      assert.notEqual(j.host_port, h.local_port, 'ENet went to the relay, not to the host');
      assert.equal(j.peers[0]?.port, h.peers[0]?.port, 'one relay port per pair');
      assert.ok(
        join.lines.some((l) => l.godot === 'enet_connected'),
        'ENet connected through the relay',
      );
    });
  }

  /** Copies per player (host first); a mix checks that plain ENet and redundancy interoperate. */
  const REDUNDANCY_MIX = [2, 2, 1, 3];
  for (const [n, redundant] of [
    [2, false],
    [4, false],
    [4, true],
  ] as const) {
    it(`${n} Godot players punch every pair, then ENet connects and an RPC round-trips both ways${redundant ? ` (enet_redundancy ${REDUNDANCY_MIX.join('/')})` : ''}`, async () => {
      assert.ok(server);
      const s = session();
      const players: Proc[] = [];
      const host = await spawnGodot(server.port, s, {
        name: 'p0',
        host: true,
        after: 'enet',
        maxPlayers: n,
        redundancy: redundant ? REDUNDANCY_MIX[0] : 1,
      });
      players.push(host);
      procs.push(host);
      await host.waitForLine((l) => l.signal === 'session_registered', 15_000);
      for (let i = 1; i < n; i++) {
        const p = await spawnGodot(server.port, s, {
          name: `p${i}`,
          host: false,
          after: 'enet',
          maxPlayers: n,
          redundancy: redundant ? REDUNDANCY_MIX[i] : 1,
        });
        players.push(p);
        procs.push(p);
      }
      const results = [];
      for (const [i, p] of players.entries()) {
        const punched = await checkGodot(`${n} Godot players: p${i}`, p, 'rpc_ok');
        results.push(punched.result as { peers: { name: string; path: string }[] });
      }
      for (const [i, r] of results.entries()) {
        assert.equal(r.peers.length, n - 1, `p${i} confirmed every other player`);
      }
    });
  }
});
