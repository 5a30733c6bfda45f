/**
 * The benchmark's phases, in order, and the figures they produce. Every throughput figure of
 * the server is taken beside the echo reference's, in the same run, under the same load.
 */
import { ECHO_SERVER_PATH, SERVER_CLI_PATH } from '../cli/index.js';
import { ATTACK_KINDS } from './attack.js';
import { firewalledReport, runFirewalledAttacks } from './attack-netns.js';
import {
  type AttackPhaseFigures,
  type AttackPlan,
  attackReport,
  runAttackPhase,
} from './attack-phase.js';
import { type BenchChild, freeUdpPort, startChild } from './child.js';
import { type GodotPunchOutcome, measureGodotPunch } from './godot.js';
import { LOAD_ADDRESS, type LoadResult, openIdleSessions, runClosedLoop } from './lobby-load.js';
import { type CpuSnapshot, cpuBetween, rssBytes, snapshotCpu } from './process-stats.js';
import { newestProfile, type ProfileSummary, summariseProfile } from './profile.js';
import { measureLabPunch, measureSimPunch, type PunchOutcome } from './punch.js';
import { buildReport, type PhaseFigures } from './report.js';

/**
 * Longest idle wait for a settled RSS reading. A full GC right after activity leaves the heap
 * at its grown size (young generation at its maximum, pages kept for reuse); V8 shrinks it only
 * once its allocation-rate estimate, sampled at each GC, says the process went quiet. So the
 * reading repeats a full GC every second of idleness until RSS has dropped and holds steady.
 * Measured here: RSS per idle session falls from ~800 B right after the GC to ~500-650 B once
 * settled; Node 20 settles in ~5-8 s, Node 26 in ~10-17 s. Baseline and final reading follow
 * the same rule, so each is taken in the state a quiet server sits in.
 */
const MEMORY_SETTLE_MAX_MS = 16_000;
/** Idle time between the GCs of a settling reading. */
const MEMORY_POLL_MS = 1000;
/** A fall of RSS by this share counts as the heap having shrunk. */
const MEMORY_SHRINK_SHARE = 0.03;
/** Readings within this share of each other count as steady. */
const MEMORY_STEADY_SHARE = 0.005;

export interface BenchPlan {
  readonly smoke: boolean;
  /** Echo/server alternations of the 2-player phase (ABBA order evens out machine noise). */
  readonly rounds2p: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Lobbies in flight at once (each holds one socket per player). */
  readonly concurrency2p: number;
  readonly concurrency8p: number;
  readonly idleSessions: number;
  readonly idleBatch: number;
  readonly idleConcurrency: number;
  /** Complete lobbies run on the memory server before its baseline is read. */
  readonly memoryWarmupMs: number;
  /** Longest idle wait before each RSS reading (see MEMORY_SETTLE_MAX_MS). */
  readonly memorySettleMs: number;
  readonly simRuns: number;
  readonly labRuns: number;
  readonly legacyLabRuns: number;
  /** NAT lab runs of each hard-NAT pair (birthday, relay-only), in the same lab. */
  readonly hardLabRuns: number;
  /** Loopback runs of a Godot 4 addon host, and as many of a Node CLI host (./godot.ts). */
  readonly godotRuns: number;
  /** Set to profile the server under the 2-player load into this directory. */
  readonly profileDir?: string | undefined;
  /** One-source floods beside legit lobbies, and the long worst-case memory attack. */
  readonly attacks: AttackPlan;
  /** Run the attack phase alone (`--attacks-only`). */
  readonly attacksOnly?: boolean;
}

export const FULL_PLAN: BenchPlan = {
  smoke: false,
  rounds2p: 4,
  warmupMs: 700,
  measureMs: 2500,
  concurrency2p: 64,
  concurrency8p: 64,
  idleSessions: 100_000,
  idleBatch: 1000,
  idleConcurrency: 64,
  memoryWarmupMs: 2000,
  memorySettleMs: MEMORY_SETTLE_MAX_MS,
  simRuns: 300,
  labRuns: 20,
  legacyLabRuns: 5,
  hardLabRuns: 10,
  godotRuns: 5,
  attacks: {
    kinds: ATTACK_KINDS,
    floodMs: 3000,
    baseMs: 3000,
    memoryAttackMs: 60_000,
    memoryAttackNoLimitsMs: 20_000,
  },
};

export const SMOKE_PLAN: BenchPlan = {
  smoke: true,
  rounds2p: 1,
  warmupMs: 200,
  measureMs: 500,
  concurrency2p: 16,
  concurrency8p: 4,
  idleSessions: 2000,
  idleBatch: 1000,
  idleConcurrency: 100,
  memoryWarmupMs: 200,
  memorySettleMs: 200,
  simRuns: 20,
  labRuns: 0,
  legacyLabRuns: 0,
  // One run of each hard-NAT pair keeps the lab's code path alive (~10 s with the lab's build).
  hardLabRuns: 1,
  godotRuns: 1,
  // Seconds, for CI: two floods and a 1 s memory attack (figures not meaningful).
  attacks: {
    kinds: ['v2_keepalive', 'legacy_rs'],
    floodMs: 300,
    baseMs: 300,
    memoryAttackMs: 1000,
    memoryAttackNoLimitsMs: 0,
  },
};

/** Session MAX for the idle-session test: above 2, so 2 members leave the session waiting. */
const IDLE_SESSION_MAX_PLAYERS = 4;
/** Warm-up of every 2-player round after the first (the closed loop fills in milliseconds). */
const LATER_ROUND_WARMUP_MS = 200;
/** Window of the one-lobby-at-a-time latency phase. */
const UNLOADED_MEASURE_MS = 1000;
/** Each phase draws lobby ids from its own range so that no key repeats in one server. */
const LOBBY_ID_RANGE = 10_000_000;

const gcHook = new URL('./gc-hook.js', import.meta.url).href;

async function startServer(extraNodeFlags: readonly string[]): Promise<BenchChild> {
  const port = await freeUdpPort();
  // Silent: no log line per session. The port is chosen here, so no startup line is needed.
  return startChild(
    'server',
    [
      ...extraNodeFlags,
      '--expose-gc',
      '--import',
      gcHook,
      SERVER_CLI_PATH,
      String(port),
      'y',
      '--host',
      LOAD_ADDRESS,
      '--log-level',
      'silent',
      // Every load client shares one address: per-source quotas would measure themselves.
      '--no-source-limits',
    ],
    { ipc: true, port },
  );
}

function startEcho(): Promise<BenchChild> {
  return startChild('echo', [ECHO_SERVER_PATH, '0', LOAD_ADDRESS], { ipc: false });
}

let nextLobbyRange = 1;
function freshLobbyIds(): number {
  return LOBBY_ID_RANGE * nextLobbyRange++;
}

/** One closed-loop run against `target`, with CPU of every watched process over the window. */
async function loadPhase(
  target: BenchChild,
  mode: 'server' | 'echo',
  players: number,
  concurrency: number,
  plan: BenchPlan,
  watched: readonly BenchChild[],
): Promise<PhaseFigures> {
  let before: CpuSnapshot | undefined;
  let after: CpuSnapshot | undefined;
  const pids = watched.map((c) => c.pid);
  const load: LoadResult = await runClosedLoop({
    target: { mode, address: LOAD_ADDRESS, port: target.port },
    players,
    concurrency,
    warmupMs: plan.warmupMs,
    measureMs: plan.measureMs,
    firstLobbyId: freshLobbyIds(),
    onWindowOpen: () => {
      before = snapshotCpu(pids);
    },
    onWindowClose: () => {
      after = snapshotCpu(pids);
    },
  });
  if (before === undefined || after === undefined) throw new Error('window never closed');
  const idle = watched.filter((c) => c !== target);
  return {
    mode,
    players,
    concurrency,
    windowMs: load.windowMs,
    requests: load.requestsSent,
    replies: load.repliesVerified,
    lobbies: load.lobbiesCompleted,
    lobbiesFailed: load.lobbiesFailed,
    verifyFailures: load.verifyFailures,
    timeouts: load.timeouts,
    targetCpuUs: cpuBetween(before, after, target.pid),
    machineBusyUs: after.machineBusyUs - before.machineBusyUs,
    otherCpuUs: idle.reduce(
      (sum, c) => sum + cpuBetween(before as CpuSnapshot, after as CpuSnapshot, c.pid),
      0,
    ),
    loadCpuUs: load.loadCpuUs,
    latenciesMs: load.latenciesMs,
  };
}

/** Sums alternating rounds of one mode into one phase (latencies merged). */
function mergePhases(phases: readonly PhaseFigures[]): PhaseFigures {
  const first = phases[0];
  if (first === undefined) throw new Error('no phases to merge');
  const latencies = Float64Array.from(phases.flatMap((p) => Array.from(p.latenciesMs)));
  latencies.sort();
  const sum = (pick: (p: PhaseFigures) => number): number =>
    phases.reduce((total, p) => total + pick(p), 0);
  return {
    mode: first.mode,
    players: first.players,
    concurrency: first.concurrency,
    windowMs: sum((p) => p.windowMs),
    requests: sum((p) => p.requests),
    replies: sum((p) => p.replies),
    lobbies: sum((p) => p.lobbies),
    lobbiesFailed: sum((p) => p.lobbiesFailed),
    verifyFailures: sum((p) => p.verifyFailures),
    timeouts: sum((p) => p.timeouts),
    targetCpuUs: sum((p) => p.targetCpuUs),
    otherCpuUs: sum((p) => p.otherCpuUs),
    machineBusyUs: sum((p) => p.machineBusyUs),
    loadCpuUs: sum((p) => p.loadCpuUs),
    latenciesMs: latencies,
  };
}

export interface MemoryFigures {
  readonly sessions: number;
  readonly failed: number;
  readonly failedVerify: number;
  readonly failedTimeout: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly heapBefore: number;
  readonly heapAfter: number;
  readonly gcForced: boolean;
  readonly openMs: number;
  /** How long each reading waited for V8's memory reducer (ms). */
  readonly settleBeforeMs: number;
  readonly settleAfterMs: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface SettledMemory {
  readonly rss: number;
  readonly heap: number;
  readonly gc: boolean;
  /** How long the reading waited to settle; the maximum means RSS never shrank. */
  readonly waitedMs: number;
}

/**
 * Full GC every second of idleness until RSS has shrunk and then held steady for two readings
 * (or `maxWaitMs` passed); returns the last reading.
 */
async function settledMemory(child: BenchChild, maxWaitMs: number): Promise<SettledMemory> {
  let report = await child.collectGarbage();
  const startedAt = performance.now();
  const first = rssBytes(child.pid);
  let previous = first;
  let steadyReadings = 0;
  while (performance.now() - startedAt < maxWaitMs) {
    await sleep(MEMORY_POLL_MS);
    report = await child.collectGarbage();
    const rss = rssBytes(child.pid);
    steadyReadings =
      Math.abs(rss - previous) <= previous * MEMORY_STEADY_SHARE ? steadyReadings + 1 : 0;
    previous = rss;
    if (rss < first * (1 - MEMORY_SHRINK_SHARE) && steadyReadings >= 2) break;
  }
  return {
    rss: previous,
    heap: report?.heapUsed ?? Number.NaN,
    gc: report?.collected === true,
    waitedMs: performance.now() - startedAt,
  };
}

/**
 * RSS per idle session on a fresh server: warmed up by complete lobbies (JIT, heap sizes as
 * under real traffic), then the baseline, then N idle 2-member sessions, then the reading.
 */
export async function memoryPhase(plan: BenchPlan): Promise<MemoryFigures> {
  const server = await startServer([]);
  try {
    await runClosedLoop({
      target: { mode: 'server', address: LOAD_ADDRESS, port: server.port },
      players: 2,
      concurrency: plan.concurrency2p,
      warmupMs: plan.memoryWarmupMs,
      measureMs: 1,
      firstLobbyId: freshLobbyIds(),
    });
    const before = await settledMemory(server, plan.memorySettleMs);
    const opened = await openIdleSessions({
      target: { mode: 'server', address: LOAD_ADDRESS, port: server.port },
      sessions: plan.idleSessions,
      firstLobbyId: freshLobbyIds(),
      concurrency: plan.idleConcurrency,
      batchSize: plan.idleBatch,
      maxPlayers: IDLE_SESSION_MAX_PLAYERS,
    });
    const after = await settledMemory(server, plan.memorySettleMs);
    return {
      sessions: opened.opened,
      failed: opened.failed,
      failedVerify: opened.verifyFailures,
      failedTimeout: opened.timeouts,
      rssBefore: before.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapAfter: after.heap,
      gcForced: before.gc && after.gc,
      openMs: opened.elapsedMs,
      settleBeforeMs: before.waitedMs,
      settleAfterMs: after.waitedMs,
    };
  } finally {
    await server.stop();
  }
}

/** The server under the 2-player load with `--cpu-prof`; a separate process, not measured. */
async function profilePhase(plan: BenchPlan, dir: string): Promise<ProfileSummary | undefined> {
  const server = await startServer(['--cpu-prof', '--cpu-prof-dir', dir]);
  try {
    await runClosedLoop({
      target: { mode: 'server', address: LOAD_ADDRESS, port: server.port },
      players: 2,
      concurrency: plan.concurrency2p,
      warmupMs: plan.warmupMs,
      measureMs: plan.measureMs,
      firstLobbyId: freshLobbyIds(),
    });
  } finally {
    await server.stop();
  }
  const file = newestProfile(dir);
  return file === undefined ? undefined : summariseProfile(file, 15);
}

export interface BenchResult {
  readonly table: string;
  readonly json: Record<string, unknown>;
}

export async function runBench(plan: BenchPlan): Promise<BenchResult> {
  const startedAt = performance.now();
  if (plan.attacksOnly === true) {
    const { json, lines } = attackReport(await runAttackPhase(plan.attacks));
    const firewalled = firewalledReport(await runFirewalledAttacks(plan.attacks));
    const elapsed = Math.round((performance.now() - startedAt) / 100) / 10;
    return {
      table: [...lines, '', ...firewalled.lines, '', `done in ${elapsed} s`].join('\n'),
      json: {
        node_version: process.version,
        smoke: plan.smoke,
        ...json,
        ...firewalled.json,
        elapsed_s: elapsed,
      },
    };
  }
  const echo = await startEcho();
  let server: BenchChild | undefined;
  const phases2pEcho: PhaseFigures[] = [];
  const phases2pServer: PhaseFigures[] = [];
  let phase8pServer: PhaseFigures;
  let phase8pEcho: PhaseFigures;
  let unloadedEcho: PhaseFigures;
  let unloadedServer: PhaseFigures;
  let serverRssBeforeLoad = Number.NaN;
  let serverRssAfterLoad = Number.NaN;
  try {
    server = await startServer([]);
    serverRssBeforeLoad = (await settledMemory(server, 0)).rss;
    const watched = [server, echo];
    for (let round = 0; round < plan.rounds2p; round++) {
      // JIT and socket buffers are warm after the first round; later rounds only ramp up.
      const roundPlan =
        round === 0 ? plan : { ...plan, warmupMs: Math.min(plan.warmupMs, LATER_ROUND_WARMUP_MS) };
      const runEcho = async () => {
        phases2pEcho.push(await loadPhase(echo, 'echo', 2, plan.concurrency2p, roundPlan, watched));
      };
      const runServer = async () => {
        phases2pServer.push(
          await loadPhase(
            server as BenchChild,
            'server',
            2,
            plan.concurrency2p,
            roundPlan,
            watched,
          ),
        );
      };
      // ABBA order: a machine load that drifts during the run weighs on both sides alike.
      if (round % 2 === 0) {
        await runEcho();
        await runServer();
      } else {
        await runServer();
        await runEcho();
      }
    }
    phase8pEcho = await loadPhase(echo, 'echo', 8, plan.concurrency8p, plan, watched);
    phase8pServer = await loadPhase(server, 'server', 8, plan.concurrency8p, plan, watched);
    // One lobby at a time: the service time of a request with no queue in front of it.
    const single = { ...plan, measureMs: Math.min(plan.measureMs, UNLOADED_MEASURE_MS) };
    unloadedEcho = await loadPhase(echo, 'echo', 2, 1, single, watched);
    unloadedServer = await loadPhase(server, 'server', 2, 1, single, watched);
    serverRssAfterLoad = (await settledMemory(server, 0)).rss;
  } finally {
    await server?.stop();
    await echo.stop();
  }
  const memory = await memoryPhase(plan);
  const sim: PunchOutcome = await measureSimPunch(plan.simRuns);
  const skipped = { ok: false as const, reason: 'skipped in smoke mode' };
  const lab =
    plan.labRuns + plan.legacyLabRuns + plan.hardLabRuns > 0
      ? await measureLabPunch({
          v2: plan.labRuns,
          legacy: plan.legacyLabRuns,
          hard: plan.hardLabRuns,
        })
      : { v2: skipped, legacy: skipped, birthday: skipped, relay: skipped };
  const godot: GodotPunchOutcome = await measureGodotPunch(plan.godotRuns);
  const attacks: AttackPhaseFigures = await runAttackPhase(plan.attacks);
  const firewalledAttacks = await runFirewalledAttacks(plan.attacks);
  const profile =
    plan.profileDir === undefined ? undefined : await profilePhase(plan, plan.profileDir);
  return buildReport({
    plan,
    echo2p: mergePhases(phases2pEcho),
    server2p: mergePhases(phases2pServer),
    echo8p: phase8pEcho,
    server8p: phase8pServer,
    echoUnloaded: unloadedEcho,
    serverUnloaded: unloadedServer,
    serverRssBeforeLoad,
    serverRssAfterLoad,
    memory,
    sim,
    lab,
    godot,
    attacks,
    firewalledAttacks,
    profile,
    elapsedMs: performance.now() - startedAt,
  });
}
