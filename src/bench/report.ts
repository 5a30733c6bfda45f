/**
 * Turns the phases' raw counts into the published figures: the human table and the JSON line
 * (snake_case fields, the contract of `npm run bench`'s last line), with pass/fail per target.
 */
import { availableParallelism } from 'node:os';
import { firewalledReport } from './attack-netns.js';
import { type AttackPhaseFigures, attackReport } from './attack-phase.js';
import type { BenchPlan, MemoryFigures } from './bench.js';
import type { GodotPunchOutcome } from './godot.js';
import type { ProfileSummary } from './profile.js';
import type { HardPairOutcome, LabPunchOutcome, PunchOutcome } from './punch.js';

/** A process counts as the bottleneck when it used at least this share of one core. */
const SATURATED_CORE_SHARE = 0.9;
const MACHINE_CORES = availableParallelism();
/** Above this share of a core used by outside processes, throughput figures get a warning. */
const NOISY_OUTSIDE_CORE_SHARE = 0.25;

export interface PhaseFigures {
  readonly mode: 'server' | 'echo';
  readonly players: number;
  readonly concurrency: number;
  readonly windowMs: number;
  /** Requests sent (datagrams into the target). */
  readonly requests: number;
  /** Replies received and verified (datagrams out of the target). */
  readonly replies: number;
  readonly lobbies: number;
  readonly lobbiesFailed: number;
  readonly verifyFailures: number;
  readonly timeouts: number;
  readonly targetCpuUs: number;
  /** CPU of the watched process that was NOT under load (should be ~0). */
  readonly otherCpuUs: number;
  readonly loadCpuUs: number;
  /** Busy CPU of the whole machine over the window (all cores, all processes). */
  readonly machineBusyUs: number;
  readonly latenciesMs: Float64Array;
}

export interface ReportInput {
  readonly plan: BenchPlan;
  readonly echo2p: PhaseFigures;
  readonly server2p: PhaseFigures;
  readonly echo8p: PhaseFigures;
  readonly server8p: PhaseFigures;
  /** One lobby in flight: latency without queueing. */
  readonly echoUnloaded: PhaseFigures;
  readonly serverUnloaded: PhaseFigures;
  /** RSS of the throughput server just after start and after all its load (one full GC). */
  readonly serverRssBeforeLoad: number;
  readonly serverRssAfterLoad: number;
  readonly memory: MemoryFigures;
  readonly sim: PunchOutcome;
  readonly lab: LabPunchOutcome;
  /** Loopback: a Godot 4 addon host and, in the same phase, a Node CLI host. */
  readonly godot: GodotPunchOutcome;
  /** The one-source floods and the worst memory attack (docs/security.md). */
  readonly attacks: AttackPhaseFigures;
  /** The floods behind deploy/holepunch.nft, or why they did not run. */
  readonly firewalledAttacks: AttackPhaseFigures | string;
  readonly profile: ProfileSummary | undefined;
  readonly elapsedMs: number;
}

/** The value at quantile q (0..1) of an ascending array; NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index] as number;
}

function round(value: number, digits: number): number | null {
  if (!Number.isFinite(value)) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function msgsPerS(p: PhaseFigures): number {
  return ((p.requests + p.replies) * 1000) / p.windowMs;
}

function cpuUsPerMsg(p: PhaseFigures): number {
  return p.targetCpuUs / (p.requests + p.replies);
}

function coreShare(cpuUs: number, windowMs: number): number {
  return cpuUs / (windowMs * 1000);
}

/** CPU of processes outside the benchmark during the window (other users of the machine). */
function outsideCpuUs(p: PhaseFigures): number {
  return Math.max(0, p.machineBusyUs - p.targetCpuUs - p.loadCpuUs - p.otherCpuUs);
}

/**
 * Which side limited a closed-loop phase, judged from each process's CPU over the window:
 * a process at ≥ 90 % of a core is the bottleneck; if neither is but the machine's cores are
 * (nearly) all busy, the two shared the CPU with each other or with outside processes.
 */
function bottleneck(p: PhaseFigures): string {
  const load = coreShare(p.loadCpuUs, p.windowMs);
  const target = coreShare(p.targetCpuUs, p.windowMs);
  const machine = coreShare(p.machineBusyUs, p.windowMs) / MACHINE_CORES;
  const name = p.mode === 'server' ? 'server' : 'echo';
  if (load >= SATURATED_CORE_SHARE && load >= target) return 'load generator (CPU-bound)';
  if (target >= SATURATED_CORE_SHARE) return `${name} (CPU-bound)`;
  if (machine >= SATURATED_CORE_SHARE) {
    const outside = Math.round(coreShare(outsideCpuUs(p), p.windowMs) * 100);
    return `machine CPU (all ${MACHINE_CORES} cores busy; outside processes ${outside} % of a core)`;
  }
  return 'neither CPU-bound: closed-loop round trips (latency)';
}

function punchFields(outcome: PunchOutcome): {
  p50: number | null;
  p99: number | null;
  runs: number;
  failures: number;
  reason: string | null;
} {
  if (!outcome.ok) return { p50: null, p99: null, runs: 0, failures: 0, reason: outcome.reason };
  const times = [...outcome.figures.timesMs].sort((a, b) => a - b);
  return {
    p50: round(quantile(times, 0.5), 1),
    p99: round(quantile(times, 0.99), 1),
    runs: outcome.figures.runs,
    failures: outcome.figures.failures,
    reason: times.length === 0 ? 'no run succeeded' : null,
  };
}

/** A hard-NAT pair: the time fields plus the share of runs that punched (directly) and paths. */
function hardPairFields(outcome: HardPairOutcome): ReturnType<typeof punchFields> & {
  successShare: number | null;
  directShare: number | null;
  paths: Readonly<Record<string, number>> | null;
  fromSpawnP50: number | null;
} {
  const times = punchFields(outcome);
  if (!outcome.ok || outcome.figures.runs === 0) {
    return { ...times, successShare: null, directShare: null, paths: null, fromSpawnP50: null };
  }
  const { runs, failures, direct, paths, fromSpawnMs } = outcome.figures;
  return {
    ...times,
    successShare: round((runs - failures) / runs, 3),
    directShare: round(direct / runs, 3),
    paths,
    fromSpawnP50: round(quantile(fromSpawnMs, 0.5), 1),
  };
}

interface Target {
  readonly rule: string;
  readonly value: number | null;
  readonly reference: number | null;
  readonly pass: boolean | null;
}

function target(
  value: number | null,
  reference: number | null,
  rule: string,
  passes: (v: number, r: number) => boolean,
): Target {
  const pass = value === null || reference === null ? null : passes(value, reference);
  return { rule, value, reference, pass };
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (let i = 0; i < row.length; i++) {
      widths[i] = Math.max(widths[i] ?? 0, (row[i] as string).length);
    }
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => pad(cell, widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function show(value: number | null, unit = ''): string {
  return value === null ? 'n/a' : `${value}${unit}`;
}

/** `paths host/join ×n, …`, most frequent first. */
function pathsText(paths: Readonly<Record<string, number>> | null): string {
  if (paths === null) return '';
  const parts = Object.entries(paths)
    .sort((a, b) => b[1] - a[1])
    .map(([path, n]) => `${path}×${n}`);
  return parts.length === 0 ? '' : `paths ${parts.join(', ')}`;
}

function passText(t: Target): string {
  if (t.pass === null) return 'not measured';
  return t.pass ? 'PASS' : 'FAIL';
}

export function buildReport(input: ReportInput): { table: string; json: Record<string, unknown> } {
  const { echo2p, server2p, echo8p, server8p, memory } = input;
  const serverMsgs = msgsPerS(server2p);
  const echoMsgs = msgsPerS(echo2p);
  const cpuPerMsg = cpuUsPerMsg(server2p);
  const echoCpuPerMsg = cpuUsPerMsg(echo2p);
  const rssPerSession =
    memory.sessions > 0 ? (memory.rssAfter - memory.rssBefore) / memory.sessions : Number.NaN;
  const heapPerSession =
    memory.sessions > 0 ? (memory.heapAfter - memory.heapBefore) / memory.sessions : Number.NaN;
  const sim = punchFields(input.sim);
  const labV2 = punchFields(input.lab.v2);
  const labLegacy = punchFields(input.lab.legacy);
  const godot = punchFields(input.godot.godot);
  const loopback = punchFields(input.godot.node);
  const birthday = hardPairFields(input.lab.birthday);
  const relay = hardPairFields(input.lab.relay);

  const attacks = attackReport(input.attacks);
  const firewalled = firewalledReport(input.firewalledAttacks);
  const json = {
    node_version: process.version,
    cpu_cores: MACHINE_CORES,
    smoke: input.plan.smoke,
    server_msgs_per_s: round(serverMsgs, 0),
    echo_msgs_per_s: round(echoMsgs, 0),
    server_vs_echo: round(serverMsgs / echoMsgs, 3),
    cpu_us_per_msg: round(cpuPerMsg, 3),
    echo_cpu_us_per_msg: round(echoCpuPerMsg, 3),
    cpu_vs_echo: round(cpuPerMsg / echoCpuPerMsg, 3),
    cpu_us_per_msg_8p: round(cpuUsPerMsg(server8p), 3),
    echo_cpu_us_per_msg_8p: round(cpuUsPerMsg(echo8p), 3),
    cpu_vs_echo_8p: round(cpuUsPerMsg(server8p) / cpuUsPerMsg(echo8p), 3),
    lobbies_per_s_2p: round((server2p.lobbies * 1000) / server2p.windowMs, 0),
    lobbies_per_s_8p: round((server8p.lobbies * 1000) / server8p.windowMs, 0),
    echo_lobbies_per_s_2p: round((echo2p.lobbies * 1000) / echo2p.windowMs, 0),
    echo_lobbies_per_s_8p: round((echo8p.lobbies * 1000) / echo8p.windowMs, 0),
    p50_ms: round(quantile(server2p.latenciesMs, 0.5), 3),
    p99_ms: round(quantile(server2p.latenciesMs, 0.99), 3),
    echo_p50_ms: round(quantile(echo2p.latenciesMs, 0.5), 3),
    echo_p99_ms: round(quantile(echo2p.latenciesMs, 0.99), 3),
    unloaded_p50_ms: round(quantile(input.serverUnloaded.latenciesMs, 0.5), 3),
    unloaded_p99_ms: round(quantile(input.serverUnloaded.latenciesMs, 0.99), 3),
    echo_unloaded_p50_ms: round(quantile(input.echoUnloaded.latenciesMs, 0.5), 3),
    echo_unloaded_p99_ms: round(quantile(input.echoUnloaded.latenciesMs, 0.99), 3),
    cpu_us_per_lobby: round(server2p.targetCpuUs / server2p.lobbies, 1),
    cpu_us_per_lobby_8p: round(server8p.targetCpuUs / server8p.lobbies, 1),
    rss_bytes_per_idle_session: round(rssPerSession, 0),
    heap_bytes_per_idle_session: round(heapPerSession, 0),
    idle_sessions: memory.sessions,
    idle_sessions_failed: memory.failed,
    idle_open_s: round(memory.openMs / 1000, 1),
    idle_gc_forced: memory.gcForced,
    idle_settle_s: [round(memory.settleBeforeMs / 1000, 1), round(memory.settleAfterMs / 1000, 1)],
    server_rss_before_load_bytes: Number.isFinite(input.serverRssBeforeLoad)
      ? input.serverRssBeforeLoad
      : null,
    server_rss_after_load_bytes: Number.isFinite(input.serverRssAfterLoad)
      ? input.serverRssAfterLoad
      : null,
    punch_ms_p50: labV2.p50,
    punch_ms_p99: labV2.p99,
    legacy_punch_ms_p50: labLegacy.p50,
    punch_runs: labV2.runs,
    punch_failures: labV2.failures,
    legacy_punch_runs: labLegacy.runs,
    legacy_punch_failures: labLegacy.failures,
    punch_unavailable_reason: labV2.reason ?? labLegacy.reason,
    lab_birthday_direct_share: birthday.directShare,
    lab_birthday_ms_p50: birthday.p50,
    lab_birthday_ms_p99: birthday.p99,
    lab_birthday_runs: birthday.runs,
    lab_birthday_failures: birthday.failures,
    lab_birthday_paths: birthday.paths,
    lab_birthday_unavailable_reason: birthday.reason,
    lab_relay_success_share: relay.successShare,
    lab_relay_ms_p50: relay.p50,
    lab_relay_ms_p99: relay.p99,
    lab_relay_from_spawn_ms_p50: relay.fromSpawnP50,
    lab_relay_runs: relay.runs,
    lab_relay_failures: relay.failures,
    lab_relay_paths: relay.paths,
    lab_relay_unavailable_reason: relay.reason,
    godot_punch_ms_p50: godot.p50,
    godot_punch_ms_p99: godot.p99,
    godot_handover_ms_p50: round(quantile(input.godot.godotHandoverMs, 0.5), 1),
    godot_punch_runs: godot.runs,
    godot_punch_failures: godot.failures,
    godot_unavailable_reason: godot.reason,
    loopback_punch_ms_p50: loopback.p50,
    loopback_punch_ms_p99: loopback.p99,
    loopback_punch_runs: loopback.runs,
    loopback_punch_failures: loopback.failures,
    sim_punch_ms_p50: sim.p50,
    sim_punch_ms_p99: sim.p99,
    sim_punch_runs: sim.runs,
    sim_punch_failures: sim.failures,
    sim_unavailable_reason: sim.reason,
    verify_failures:
      server2p.verifyFailures +
      echo2p.verifyFailures +
      server8p.verifyFailures +
      echo8p.verifyFailures +
      memory.failedVerify,
    lobbies_failed:
      server2p.lobbiesFailed + echo2p.lobbiesFailed + server8p.lobbiesFailed + echo8p.lobbiesFailed,
    phases: [echo2p, server2p, echo8p, server8p, input.echoUnloaded, input.serverUnloaded].map(
      (p) => ({
        target: p.mode,
        players: p.players,
        concurrency: p.concurrency,
        window_ms: round(p.windowMs, 0),
        msgs_per_s: round(msgsPerS(p), 0),
        lobbies_per_s: round((p.lobbies * 1000) / p.windowMs, 0),
        target_cpu_pct: round(coreShare(p.targetCpuUs, p.windowMs) * 100, 1),
        other_cpu_pct: round(coreShare(p.otherCpuUs, p.windowMs) * 100, 1),
        load_cpu_pct: round(coreShare(p.loadCpuUs, p.windowMs) * 100, 1),
        outside_cpu_pct: round(coreShare(outsideCpuUs(p), p.windowMs) * 100, 1),
        bottleneck: bottleneck(p),
        lobbies_failed: p.lobbiesFailed,
        verify_failures: p.verifyFailures,
        timeouts: p.timeouts,
      }),
    ),
    ...attacks.json,
    ...firewalled.json,
    profile_top:
      input.profile === undefined
        ? null
        : input.profile.top.map((e) => ({ fn: e.function, self_pct: e.selfPercent })),
    profile_file: input.profile?.file ?? null,
    elapsed_s: round(input.elapsedMs / 1000, 1),
  };

  const targets = {
    cpu_vs_echo: target(json.cpu_vs_echo, 1.2, '≤ 1.2', (v, r) => v <= r),
    server_vs_echo: target(json.server_vs_echo, 0.9, '≥ 0.9', (v, r) => v >= r),
    rss_bytes_per_idle_session: target(
      json.rss_bytes_per_idle_session,
      700,
      '≤ 700',
      (v, r) => v <= r,
    ),
    sim_punch_ms_p50: target(
      json.sim_punch_ms_p50,
      210,
      '≤ 4 × 40 ms RTT + 50 = 210',
      (v, r) => v <= r,
    ),
    punch_ms_p50: target(
      json.punch_ms_p50,
      json.legacy_punch_ms_p50 === null ? null : json.legacy_punch_ms_p50 / 10,
      '≤ legacy_punch_ms_p50 / 10',
      (v, r) => v <= r,
    ),
    lab_birthday_direct_share: target(
      json.lab_birthday_direct_share,
      0.95,
      '≥ 0.95',
      (v, r) => v >= r,
    ),
    lab_relay_ms_p50: target(json.lab_relay_ms_p50, 1500, '≤ 1500', (v, r) => v <= r),
  };

  const phaseRows = json.phases.map((p) => [
    `${p.target} ${p.players}p ×${p.concurrency}`,
    show(p.msgs_per_s),
    show(p.lobbies_per_s),
    `${show(p.target_cpu_pct)} %`,
    `${show(p.load_cpu_pct)} %`,
    `${show(p.outside_cpu_pct)} %`,
    `${p.lobbies_failed}/${p.verify_failures}/${p.timeouts}`,
    p.bottleneck,
  ]);
  const sections: string[] = [
    `HolePunch benchmark${input.plan.smoke ? ' (SMOKE: tiny sizes, figures not meaningful)' : ''} — node ${process.version}, loopback`,
    '',
    table([
      [
        'phase (target, players × lobbies in flight)',
        'msgs/s',
        'lobbies/s',
        'target CPU',
        'loadgen CPU',
        'outside CPU',
        'failed/bad/timeout',
        'bottleneck',
      ],
      ...phaseRows,
    ]),
    '',
    table([
      ['figure', 'server', 'echo reference', 'ratio', 'target', 'result'],
      [
        'datagrams/s (in+out), 2p',
        show(json.server_msgs_per_s),
        show(json.echo_msgs_per_s),
        show(json.server_vs_echo),
        targets.server_vs_echo.rule,
        passText(targets.server_vs_echo),
      ],
      [
        'CPU µs per datagram, 2p',
        show(json.cpu_us_per_msg),
        show(json.echo_cpu_us_per_msg),
        show(json.cpu_vs_echo),
        targets.cpu_vs_echo.rule,
        passText(targets.cpu_vs_echo),
      ],
      [
        'CPU µs per datagram, 8p',
        show(json.cpu_us_per_msg_8p),
        show(json.echo_cpu_us_per_msg_8p),
        show(json.cpu_vs_echo_8p),
        '',
        '',
      ],
      ['lobbies/s 2p', show(json.lobbies_per_s_2p), show(json.echo_lobbies_per_s_2p), '', '', ''],
      ['lobbies/s 8p', show(json.lobbies_per_s_8p), show(json.echo_lobbies_per_s_8p), '', '', ''],
      [
        'request→reply p50 / p99 ms, 2p',
        `${show(json.p50_ms)} / ${show(json.p99_ms)}`,
        `${show(json.echo_p50_ms)} / ${show(json.echo_p99_ms)}`,
        '',
        '',
        '',
      ],
      [
        'same, one lobby in flight',
        `${show(json.unloaded_p50_ms)} / ${show(json.unloaded_p99_ms)}`,
        `${show(json.echo_unloaded_p50_ms)} / ${show(json.echo_unloaded_p99_ms)}`,
        '',
        '',
        '',
      ],
      [
        'server CPU µs per lobby 2p / 8p',
        `${show(json.cpu_us_per_lobby)} / ${show(json.cpu_us_per_lobby_8p)}`,
        '',
        '',
        '',
        '',
      ],
      [
        `RSS B per idle session (${memory.sessions} open)`,
        show(json.rss_bytes_per_idle_session),
        'Python original ≈ 1050',
        '',
        targets.rss_bytes_per_idle_session.rule,
        passText(targets.rss_bytes_per_idle_session),
      ],
      ['V8 heap B per idle session', show(json.heap_bytes_per_idle_session), '', '', '', ''],
      [
        'sim time-to-punch p50 / p99 ms',
        `${show(sim.p50)} / ${show(sim.p99)}`,
        '',
        '',
        targets.sim_punch_ms_p50.rule,
        passText(targets.sim_punch_ms_p50),
      ],
      [
        'NAT lab time-to-punch p50 / p99 ms',
        `${show(labV2.p50)} / ${show(labV2.p99)}`,
        `legacy client p50 ${show(labLegacy.p50)}`,
        '',
        targets.punch_ms_p50.rule,
        passText(targets.punch_ms_p50),
      ],
      [
        'NAT lab birthday pair (pr host, sym join, no relay): direct share, p50 / p99 ms',
        `direct ${show(birthday.directShare)} (${birthday.runs} runs), ${show(birthday.p50)} / ${show(birthday.p99)}`,
        pathsText(birthday.paths),
        '',
        targets.lab_birthday_direct_share.rule,
        passText(targets.lab_birthday_direct_share),
      ],
      [
        'NAT lab relay-only pair (sym, sym, relay): connected, p50 / p99 ms',
        `ok ${show(relay.successShare)} (${relay.runs} runs), ${show(relay.p50)} / ${show(relay.p99)}`,
        `${pathsText(relay.paths)}; from joiner spawn p50 ${show(relay.fromSpawnP50)}`,
        '',
        `p50 ${targets.lab_relay_ms_p50.rule}`,
        passText(targets.lab_relay_ms_p50),
      ],
      [
        'loopback time-to-punch p50 / p99 ms',
        `Godot 4 host ${show(godot.p50)} / ${show(godot.p99)}`,
        `Node host ${show(loopback.p50)} / ${show(loopback.p99)}`,
        '',
        `Godot hand-over p50 ${show(json.godot_handover_ms_p50)}`,
        '',
      ],
    ]),
  ];
  const notes: string[] = [];
  const outsideEcho = coreShare(outsideCpuUs(echo2p), echo2p.windowMs);
  const outsideServer = coreShare(outsideCpuUs(server2p), server2p.windowMs);
  if (Math.max(outsideEcho, outsideServer) > NOISY_OUTSIDE_CORE_SHARE) {
    notes.push(
      `machine busy: processes outside the benchmark used ${Math.round(outsideEcho * 100)} % / ${Math.round(outsideServer * 100)} % of a core during the echo / server 2p windows; datagrams/s are perturbed, CPU µs per datagram is the robust comparison`,
    );
  }
  if (sim.reason !== null) notes.push(`sim punch: ${sim.reason}`);
  if (labV2.reason !== null) notes.push(`NAT lab punch: ${labV2.reason}`);
  if (labLegacy.reason !== null && labLegacy.reason !== labV2.reason) {
    notes.push(`NAT lab legacy punch: ${labLegacy.reason}`);
  }
  if (birthday.reason !== null && birthday.reason !== labV2.reason) {
    notes.push(`NAT lab birthday pair: ${birthday.reason}`);
  }
  if (relay.reason !== null && relay.reason !== labV2.reason) {
    notes.push(`NAT lab relay-only pair: ${relay.reason}`);
  }
  if (godot.reason !== null) notes.push(`Godot punch: ${godot.reason}`);
  if (loopback.reason !== null) notes.push(`loopback Node punch: ${loopback.reason}`);
  if (!memory.gcForced) notes.push('memory: GC could not be forced; RSS read after settling only');
  if (memory.failed > 0) {
    notes.push(
      `memory: ${memory.failed} idle sessions failed to register (${memory.failedVerify} wrong replies, ${memory.failedTimeout} timeouts)`,
    );
  }
  sections.push('', ...attacks.lines, '', ...firewalled.lines);
  if (notes.length > 0) sections.push('', ...notes.map((n) => `note: ${n}`));
  if (input.profile !== undefined) {
    sections.push(
      '',
      `CPU profile of the server under 2p load (${input.profile.busyMs} ms busy): ${input.profile.file}`,
      table([
        ['self %', 'self ms', 'function'],
        ...input.profile.top.map((e) => [String(e.selfPercent), String(e.selfMs), e.function]),
      ]),
    );
  }
  sections.push('', `done in ${json.elapsed_s} s`);
  return {
    table: sections.join('\n'),
    json: {
      ...json,
      targets: Object.fromEntries(
        Object.entries(targets).map(([k, t]) => [
          k,
          { rule: t.rule, value: t.value, reference: t.reference, pass: t.pass },
        ]),
      ),
    },
  };
}
