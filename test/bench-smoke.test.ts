import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { BENCH_RUN_PATH } from '../src/cli/index.js';
import { unitTier } from './suites.js';

const RUN_SCRIPT = BENCH_RUN_PATH;
/** The smoke run takes ~25 s alone (attacks ~9 s, the NAT lab ~8 s); a loaded CI machine gets generous headroom. */
const SMOKE_LIMIT_MS = 90_000;

interface SmokeRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runSmoke(): Promise<SmokeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUN_SCRIPT, '--smoke'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`bench --smoke did not finish in ${SMOKE_LIMIT_MS} ms:\n${stdout}\n${stderr}`),
      );
    }, SMOKE_LIMIT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function positive(json: Record<string, unknown>, field: string): number {
  const value = json[field];
  assert.equal(typeof value, 'number', `${field} is a number (got ${String(value)})`);
  assert.ok(Number.isFinite(value) && (value as number) > 0, `${field} > 0 (got ${value})`);
  return value as number;
}

describe('npm run bench, smoke mode', { skip: unitTier() }, () => {
  it('runs every phase in seconds and ends with one JSON line holding every published figure', async () => {
    const run = await runSmoke();
    assert.equal(run.code, 0, `exit code 0\n${run.stderr}`);
    const lines = run.stdout.trimEnd().split('\n');
    assert.ok(lines.length > 5, 'a readable table comes before the JSON line');
    assert.match(run.stdout, /datagrams\/s \(in\+out\)/);
    const json = JSON.parse(lines.at(-1) as string) as Record<string, unknown>;

    assert.equal(json.smoke, true);
    const serverMsgs = positive(json, 'server_msgs_per_s');
    const echoMsgs = positive(json, 'echo_msgs_per_s');
    assert.ok(
      Math.abs((json.server_vs_echo as number) - serverMsgs / echoMsgs) < 0.01,
      'server_vs_echo is the ratio of the two rates',
    );
    const cpu = positive(json, 'cpu_us_per_msg');
    const echoCpu = positive(json, 'echo_cpu_us_per_msg');
    assert.ok(Math.abs((json.cpu_vs_echo as number) - cpu / echoCpu) < 0.01);
    // A datagram cannot cost less than ~0.1 µs or more than 10 ms of CPU on any sane machine.
    for (const perMsg of [cpu, echoCpu]) assert.ok(perMsg > 0.1 && perMsg < 10_000);
    positive(json, 'lobbies_per_s_2p');
    positive(json, 'lobbies_per_s_8p');
    const p50 = positive(json, 'p50_ms');
    const p99 = positive(json, 'p99_ms');
    assert.ok(p99 >= p50, 'p99 ≥ p50');
    positive(json, 'cpu_us_per_lobby');
    assert.equal(typeof json.rss_bytes_per_idle_session, 'number');
    // A timed-out registration on a loaded CI machine is not a bug; a wrong reply is.
    const idle = json.idle_sessions as number;
    assert.equal(idle + (json.idle_sessions_failed as number), 2000, 'every idle session tried');
    assert.ok(idle > 1000, `most idle sessions registered (${idle})`);
    // Every counted reply was checked byte for byte; a wrong one is a bug, not noise.
    assert.equal(json.verify_failures, 0, 'no reply differed from the protocol');

    const simP50 = positive(json, 'sim_punch_ms_p50');
    assert.ok((json.sim_punch_ms_p99 as number) >= simP50);
    for (const field of ['punch_ms_p50', 'punch_ms_p99', 'legacy_punch_ms_p50']) {
      assert.ok(field in json, `${field} is present`);
      const value = json[field];
      assert.ok(value === null || (typeof value === 'number' && value > 0), `${field}: ${value}`);
    }
    if (json.punch_ms_p50 === null) assert.equal(typeof json.punch_unavailable_reason, 'string');

    // The hard-NAT pairs of issue #13 (one run each in smoke): birthday probing with the relay
    // off, and two random-port sides through the relay. The lab needs root, which CI has.
    for (const pair of ['birthday', 'relay']) {
      for (const suffix of ['ms_p50', 'ms_p99', 'runs', 'failures', 'paths']) {
        assert.ok(`lab_${pair}_${suffix}` in json, `lab_${pair}_${suffix} is present`);
      }
      const reason = json[`lab_${pair}_unavailable_reason`];
      if (process.env.CI === 'true' || json[`lab_${pair}_runs`] !== 0) {
        assert.ok(!String(reason).startsWith('NAT lab'), `the ${pair} pair ran: ${reason}`);
        assert.equal(json[`lab_${pair}_runs`], 1);
      } else {
        assert.equal(typeof reason, 'string');
      }
    }
    assert.ok('lab_birthday_direct_share' in json && 'lab_relay_success_share' in json);

    // Loopback: a Godot 4 addon host beside a Node CLI host, same server, same phase. The Node
    // runs need nothing; Godot needs root and its chroot, which CI has (there it must run).
    assert.equal(json.loopback_punch_runs, 1);
    assert.equal(json.loopback_punch_failures, 0, 'the Node loopback run punched');
    positive(json, 'loopback_punch_ms_p50');
    for (const field of ['godot_punch_ms_p50', 'godot_punch_ms_p99', 'godot_handover_ms_p50']) {
      assert.ok(field in json, `${field} is present`);
    }
    if (process.env.CI === 'true' || json.godot_punch_ms_p50 !== null) {
      assert.equal(json.godot_unavailable_reason, null, String(json.godot_unavailable_reason));
      assert.equal(json.godot_punch_runs, 1);
      assert.equal(json.godot_punch_failures, 0, 'the Godot run punched');
      // The addon waits handover_ms (400 ms by default) before hole_punched; Node does not.
      assert.ok(positive(json, 'godot_punch_ms_p50') >= positive(json, 'godot_handover_ms_p50'));
    } else {
      assert.equal(typeof json.godot_unavailable_reason, 'string');
    }

    // The attack phase: floods beside legit lobbies, and the worst memory attack survived.
    assert.equal(json.attack_heap_mb, 96);
    const attacks = json.attacks as { kind: string; sent_per_s: number; v2_completed: number }[];
    assert.ok(attacks.length > 0, 'at least one flood ran');
    for (const a of attacks) assert.ok(a.sent_per_s > 0 && a.v2_completed >= 0, a.kind);
    const memoryAttacks = json.memory_attacks as { alive: boolean; serving: boolean }[];
    assert.ok(memoryAttacks[0]?.alive, 'the server survives the worst memory attack');
    assert.ok(memoryAttacks[0]?.serving, 'and serves legit lobbies of both protocols after it');
    // The same floods behind deploy/holepunch.nft: root and nft, which CI has.
    const firewalled = json.firewalled_attacks as { attacks: { kind: string }[] } | undefined;
    if (process.env.CI === 'true' || firewalled !== undefined) {
      assert.ok(firewalled !== undefined, String(json.firewalled_attacks_skipped));
      assert.deepEqual(
        firewalled.attacks.map((a) => a.kind),
        attacks.map((a) => a.kind),
      );
    } else {
      assert.equal(typeof json.firewalled_attacks_skipped, 'string');
    }

    const targets = json.targets as Record<string, { pass: boolean | null }>;
    for (const name of [
      'cpu_vs_echo',
      'server_vs_echo',
      'rss_bytes_per_idle_session',
      'sim_punch_ms_p50',
      'punch_ms_p50',
      'lab_birthday_direct_share',
      'lab_relay_ms_p50',
    ]) {
      assert.ok(name in targets, `target ${name} is reported`);
      assert.ok([true, false, null].includes(targets[name]?.pass ?? null));
    }
  });
});
