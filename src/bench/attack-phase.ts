/**
 * The benchmark's attack phase (issue 15; docs/security.md, "Measured under attack"): the
 * one-source floods of `attack.ts` against the CLI server as an operator runs it (per-source
 * limits on, `--max-old-space-size=96`), each beside legit legacy and v2 lobbies whose p99 is
 * compared with the same lobbies unflooded; then the worst memory attack for a long window
 * against a fresh server, which must be alive and serving at the end. Loopback only; every
 * flood is bounded in time.
 */
import { readFileSync } from 'node:fs';
import { SERVER_CLI_PATH } from '../cli/index.js';
import { mustRun } from '../natlab/index.js';
import {
  type AttackKind,
  type AttackResult,
  freshLegitId,
  LEGIT_PROBE,
  type LegitFigures,
  legitBoth,
  legitLoad,
  percentile,
} from './attack.js';
import { type BenchChild, freeUdpPort, startChild } from './child.js';
import { floodInChild, startFlood } from './flood-process.js';
import { cpuMicros, rssBytes } from './process-stats.js';

/** The heap limit the attacked server runs with: a small VPS's share for one service. */
export const ATTACK_HEAP_MB = 96;
/** Quiet time after each flood, so the next starts on drained socket buffers. */
const SETTLE_MS = 300;
/** RSS of the server under the memory attack is read this often. */
const RSS_POLL_MS = 250;
/** After the memory attack: legit lobbies that must all complete, and their window. */
const SERVING_LOBBIES = 20;
const SERVING_WINDOW_MS = 1500;

export interface AttackPlan {
  /** Each flood (and its legit lobbies) lasts this long. */
  readonly floodMs: number;
  /** The unflooded legit lobbies run this long first. */
  readonly baseMs: number;
  /** The floods run, in order (smoke mode runs a few). */
  readonly kinds: readonly AttackKind[];
  /** The worst memory attack, with per-source limits (the default server); 0: not run. */
  readonly memoryAttackMs: number;
  /** The same without per-source limits (the memory budget alone holds it); 0: not run. */
  readonly memoryAttackNoLimitsMs: number;
  /**
   * An nftables ruleset (`deploy/holepunch.nft`) loaded with the server's port before the
   * floods (root, in a namespace of its own: `attack-netns.ts`).
   */
  readonly firewallRules?: string;
}

export interface LegitSummary {
  readonly completed: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface FloodFigures {
  readonly kind: AttackKind;
  readonly sentPerS: number;
  readonly repliesPerS: number;
  /** Server CPU over the flood, as a share of one core, and per datagram sent to it. */
  readonly serverCoreShare: number;
  readonly serverCpuUsPerDatagram: number;
  /**
   * Datagrams the kernel dropped over the flood because a socket's receive buffer was full
   * (`RcvbufErrors` of /proc/net/snmp, machine-wide: on loopback, the server's socket), before
   * the server could see them. NaN where /proc is not readable.
   */
  readonly rcvbufDrops: number;
  readonly v2: LegitSummary;
  readonly legacy: LegitSummary;
}

export interface MemoryAttackFigures {
  readonly sourceLimits: boolean;
  readonly durationMs: number;
  readonly sentPerS: number;
  readonly peakRssBytes: number;
  readonly endRssBytes: number;
  /** V8 heap used after a full GC at the end of the attack (NaN if it could not be read). */
  readonly endHeapBytes: number;
  readonly alive: boolean;
  /** Legit lobbies right after the attack (the attacker's state still held). */
  readonly v2After: LegitSummary;
  readonly legacyAfter: LegitSummary;
}

export interface AttackPhaseFigures {
  readonly heapMb: number;
  readonly baseV2: LegitSummary;
  readonly baseLegacy: LegitSummary;
  readonly floods: readonly FloodFigures[];
  readonly memory: readonly MemoryAttackFigures[];
}

const gcHook = new URL('./gc-hook.js', import.meta.url).href;

/** The CLI server on 127.0.0.1 (where `attack.ts` sends), as an operator starts it. */
async function startAttackedServer(sourceLimits: boolean): Promise<BenchChild> {
  const port = await freeUdpPort();
  return startChild(
    'attacked server',
    [
      `--max-old-space-size=${ATTACK_HEAP_MB}`,
      '--expose-gc',
      '--import',
      gcHook,
      SERVER_CLI_PATH,
      String(port),
      'y',
      '--host',
      '127.0.0.1',
      '--log-level',
      'silent',
      ...(sourceLimits ? [] : ['--no-source-limits']),
    ],
    { ipc: true, port },
  );
}

/** Legit lobbies' outcome as the bench and the abuse test report it. */
export function legitSummary(r: LegitFigures): LegitSummary {
  return {
    completed: r.completed,
    failed: r.failed,
    p50Ms: percentile(r.latenciesMs, 50),
    p99Ms: percentile(r.latenciesMs, 99),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The kernel's count of UDP datagrams dropped on full receive buffers (Linux), or NaN. */
export function udpRcvbufErrors(): number {
  try {
    const lines = readFileSync('/proc/net/snmp', 'latin1')
      .split('\n')
      .filter((l) => l.startsWith('Udp:'));
    const names = lines[0]?.split(/\s+/) ?? [];
    const values = lines[1]?.split(/\s+/) ?? [];
    const i = names.indexOf('RcvbufErrors');
    return i === -1 ? Number.NaN : Number(values[i]);
  } catch {
    return Number.NaN;
  }
}

async function memoryAttack(sourceLimits: boolean, ms: number): Promise<MemoryAttackFigures> {
  const server = await startAttackedServer(sourceLimits);
  try {
    let peak = rssBytes(server.pid);
    const poll = setInterval(() => {
      if (server.alive()) peak = Math.max(peak, rssBytes(server.pid));
    }, RSS_POLL_MS);
    let result: AttackResult;
    try {
      result = await floodInChild('v2_memory', server.port, ms);
    } finally {
      clearInterval(poll);
    }
    const isAlive = server.alive();
    const endRss = isAlive ? rssBytes(server.pid) : Number.NaN;
    const gc = isAlive ? await server.collectGarbage() : undefined;
    const [v2After, legacyAfter] = isAlive
      ? await Promise.all([
          legitLoad('v2', server.port, performance.now() + SERVING_WINDOW_MS, {
            firstId: freshLegitId(),
            maxLobbies: SERVING_LOBBIES,
          }),
          legitLoad('legacy', server.port, performance.now() + SERVING_WINDOW_MS, {
            firstId: freshLegitId(),
            maxLobbies: SERVING_LOBBIES,
          }),
        ])
      : [
          { completed: 0, failed: SERVING_LOBBIES, latenciesMs: [] },
          { completed: 0, failed: SERVING_LOBBIES, latenciesMs: [] },
        ];
    return {
      sourceLimits,
      durationMs: result.durationMs,
      sentPerS: (result.sent * 1000) / result.durationMs,
      peakRssBytes: peak,
      endRssBytes: endRss,
      endHeapBytes: gc?.heapUsed ?? Number.NaN,
      alive: isAlive && server.alive(),
      v2After: legitSummary(v2After),
      legacyAfter: legitSummary(legacyAfter),
    };
  } finally {
    await server.stop();
  }
}

export async function runAttackPhase(plan: AttackPlan): Promise<AttackPhaseFigures> {
  const server = await startAttackedServer(true);
  let base: [LegitFigures, LegitFigures];
  const floods: FloodFigures[] = [];
  try {
    if (plan.firewallRules !== undefined) {
      // The server's alternate port is its default, PORT+1 (a probe flood there is limited too).
      await mustRun([
        'nft',
        '-D',
        `PORT=${server.port}`,
        '-D',
        `ALT_PORT=${Math.min(server.port + 1, 65535)}`,
        '-f',
        plan.firewallRules,
      ]);
    }
    base = await legitBoth(server.port, performance.now() + plan.baseMs);
    for (const kind of plan.kinds) {
      await sleep(SETTLE_MS);
      const names: string[] = [];
      const drops = udpRcvbufErrors();
      const cpu = cpuMicros(server.pid);
      const running = await startFlood(kind, server.port, plan.floodMs, {
        sessionsToLock: () => names.slice(-4),
      });
      const [v2, legacy] = await legitBoth(server.port, performance.now() + plan.floodMs, (n) =>
        names.push(n),
      );
      const attack = {
        ...(await running.result),
        cpuUs: cpuMicros(server.pid) - cpu,
        drops: udpRcvbufErrors() - drops,
      };
      floods.push({
        kind,
        sentPerS: (attack.sent * 1000) / attack.durationMs,
        repliesPerS: (attack.replies * 1000) / attack.durationMs,
        serverCoreShare: attack.cpuUs / (attack.durationMs * 1000),
        serverCpuUsPerDatagram: attack.cpuUs / Math.max(1, attack.sent),
        rcvbufDrops: attack.drops,
        v2: legitSummary(v2),
        legacy: legitSummary(legacy),
      });
    }
  } finally {
    await server.stop();
  }
  const memory: MemoryAttackFigures[] = [];
  if (plan.memoryAttackMs > 0) memory.push(await memoryAttack(true, plan.memoryAttackMs));
  if (plan.memoryAttackNoLimitsMs > 0) {
    memory.push(await memoryAttack(false, plan.memoryAttackNoLimitsMs));
  }
  return {
    heapMb: ATTACK_HEAP_MB,
    baseV2: legitSummary(base[0]),
    baseLegacy: legitSummary(base[1]),
    floods,
    memory,
  };
}

function r1(v: number): number | null {
  return Number.isFinite(v) ? Math.round(v * 10) / 10 : null;
}

function mb(bytes: number): number | null {
  return Number.isFinite(bytes) ? Math.round(bytes / 1e5) / 10 : null;
}

/** Flooded p99 over unflooded p99 (null when either is missing). */
function ratio(flooded: number, base: number): number | null {
  return Number.isFinite(flooded) && Number.isFinite(base) && base > 0
    ? Math.round((flooded / base) * 10) / 10
    : null;
}

/** The figures as the bench's JSON (snake_case) and lines for its table. */
export function attackReport(
  f: AttackPhaseFigures,
  setting = 'the CLI server with per-source limits',
): {
  json: Record<string, unknown>;
  lines: string[];
} {
  const floods = f.floods.map((x) => ({
    kind: x.kind,
    sent_per_s: Math.round(x.sentPerS),
    replies_per_s: Math.round(x.repliesPerS),
    server_cpu_pct: r1(x.serverCoreShare * 100),
    server_cpu_us_per_datagram: Number.isFinite(x.serverCpuUsPerDatagram)
      ? Math.round(x.serverCpuUsPerDatagram * 100) / 100
      : null,
    kernel_rcvbuf_drops: Number.isFinite(x.rcvbufDrops) ? x.rcvbufDrops : null,
    v2_p99_ms: r1(x.v2.p99Ms),
    v2_p99_ratio: ratio(x.v2.p99Ms, f.baseV2.p99Ms),
    v2_completed: x.v2.completed,
    v2_failed: x.v2.failed,
    legacy_p99_ms: r1(x.legacy.p99Ms),
    legacy_p99_ratio: ratio(x.legacy.p99Ms, f.baseLegacy.p99Ms),
    legacy_completed: x.legacy.completed,
    legacy_failed: x.legacy.failed,
  }));
  const memory = f.memory.map((m) => ({
    source_limits: m.sourceLimits,
    duration_s: r1(m.durationMs / 1000),
    sent_per_s: Math.round(m.sentPerS),
    peak_rss_mb: mb(m.peakRssBytes),
    end_rss_mb: mb(m.endRssBytes),
    end_heap_mb: mb(m.endHeapBytes),
    alive: m.alive,
    v2_after_completed: m.v2After.completed,
    v2_after_failed: m.v2After.failed,
    legacy_after_completed: m.legacyAfter.completed,
    legacy_after_failed: m.legacyAfter.failed,
    serving: m.alive && m.v2After.failed === 0 && m.legacyAfter.failed === 0,
  }));
  const json = {
    attack_heap_mb: f.heapMb,
    attack_base_v2_p99_ms: r1(f.baseV2.p99Ms),
    attack_base_legacy_p99_ms: r1(f.baseLegacy.p99Ms),
    attack_base_failed: f.baseV2.failed + f.baseLegacy.failed,
    attacks: floods,
    attack_legit_failed: floods.reduce((n, x) => n + x.v2_failed + x.legacy_failed, 0),
    memory_attacks: memory,
  };
  const show = (v: number | null): string => (v === null ? 'n/a' : String(v));
  const rows: string[][] = [
    [
      'attack (one source)',
      'sent/s',
      'v2 p99 ms (×base)',
      'legacy p99 ms (×base)',
      'failed v2/legacy',
      'server CPU',
      'kernel drops',
    ],
    [
      'none (base)',
      '0',
      `${show(json.attack_base_v2_p99_ms)}`,
      `${show(json.attack_base_legacy_p99_ms)}`,
      `${f.baseV2.failed}/${f.baseLegacy.failed}`,
      '',
      '',
    ],
    ...floods.map((x) => [
      x.kind,
      String(x.sent_per_s),
      `${show(x.v2_p99_ms)} (×${show(x.v2_p99_ratio)})`,
      `${show(x.legacy_p99_ms)} (×${show(x.legacy_p99_ratio)})`,
      `${x.v2_failed}/${x.legacy_failed}`,
      `${show(x.server_cpu_pct)} % (${show(x.server_cpu_us_per_datagram)} µs/dgram)`,
      show(x.kernel_rcvbuf_drops),
    ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const lines = [
    `Attacks: ${setting}, --max-old-space-size=${f.heapMb}; legit lobbies of each protocol started ${LEGIT_PROBE.ratePerS}/s beside each flood, which runs in its own process at nice 19`,
    ...rows.map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    ),
    ...memory.map(
      (m) =>
        `worst memory attack ${show(m.duration_s)} s, ${m.source_limits ? 'with' : 'without'} per-source limits: ${m.sent_per_s} datagrams/s, peak RSS ${show(m.peak_rss_mb)} MB, heap after GC ${show(m.end_heap_mb)} MB, ${m.alive ? 'alive' : 'DEAD'}; then legit v2 ${m.v2_after_completed} ok/${m.v2_after_failed} failed, legacy ${m.legacy_after_completed} ok/${m.legacy_after_failed} failed`,
    ),
  ];
  return { json, lines };
}
