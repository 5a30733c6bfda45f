import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  CLIENT_CLI_PATH,
  type CliName,
  findCliLine,
  isCliEvent,
  LEGACY_CLIENT_CLI_PATH,
  type RttLine,
  toCliLine,
} from '../cli/index.js';
import { SERVER_ADDRESS } from './addresses.js';
import type { JsonLine } from './json-process.js';
import type { Lab, LabSpec, SiteSpec } from './lab.js';
import {
  expectPair,
  MATRIX_NAT_TYPES,
  NAT_BEHAVIOUR,
  type NatType,
  type PairExpectation,
} from './nat-types.js';
import { markdownTable, type SiteVerdict } from './probe.js';

export type ClientKind = 'v2' | 'legacy';
export const CLIENT_KINDS: readonly ClientKind[] = ['v2', 'legacy'];
export const DEFAULT_LOSS_LEVELS: readonly number[] = [0, 0.1, 0.3];

/** How long the host may take to say `registered` before the joiner starts. */
const REGISTER_WAIT_MS = 15_000;
/** A trial process is killed after this long: a hang is recorded as `hang`, never waited out. */
const TRIAL_HARD_LIMIT_MS = 45_000;
/**
 * The original never retransmits, so a lost `rs`/`rc` stalls it forever; its 2 s joiner delay
 * plus our 10 s punch budget fit well within this.
 */
const LEGACY_TIMEOUT_MS = 15_000;
/** Trials running at once in one lab (2 shared cores; most of a trial is waiting). */
const DEFAULT_CONCURRENCY = 6;
/** Where `natlab matrix` writes its JSON (gitignored). */
export const RESULTS_DIR = new URL('../../../natlab/results/', import.meta.url).pathname;

const SHORT_NAME: Readonly<Record<NatType, string>> = {
  none: 'pub',
  'full-cone': 'fc',
  'address-restricted': 'ar',
  'port-restricted': 'pr',
  symmetric: 'sym',
  'port-restricted-accepting': 'pra',
  'symmetric-sequential': 'seq',
  'fast-expiry': 'fx',
  'double-nat': 'dbl',
};

/** One pair of hosts the matrix connects. */
export interface MatrixPair {
  /** e.g. `port-restricted<->symmetric` or `same-nat(hairpin)`. */
  readonly id: string;
  readonly a: NatType;
  readonly b: NatType;
  /** Lab host names (`site` or `site/1`). */
  readonly hostA: string;
  readonly hostB: string;
  readonly sameNat: 'hairpin' | 'no-hairpin' | undefined;
}

export interface TrialResult {
  readonly client: ClientKind;
  readonly pair: string;
  readonly a: NatType;
  readonly b: NatType;
  readonly loss: number;
  readonly trial: number;
  /** Lab hosts in the roles of this trial (roles alternate between trials). */
  readonly hostAt: string;
  readonly joinAt: string;
  readonly expectation: PairExpectation;
  readonly ok: boolean;
  /** The path each side says it punched (`public`, `local`, `predicted`, `reflexive`, `birthday`, `relay`). */
  readonly hostPath: string | undefined;
  readonly joinPath: string | undefined;
  /** From the joiner's start until both sides printed `punched` (includes process start). */
  readonly timeToPunchMs: number | undefined;
  /** What the clients themselves report as `elapsedMs` in `punched`. */
  readonly hostElapsedMs: number | undefined;
  readonly joinElapsedMs: number | undefined;
  /** The failure code (`punch_failed`, `timeout`, ... or `hang` when killed by the lab). */
  readonly code: string | undefined;
  /** From the joiner's start until the last side gave up (failed trials only). */
  readonly timeToFailMs: number | undefined;
  /** Game datagrams answered per side (from the `rtt` events). */
  readonly hostReceived: number;
  readonly joinReceived: number;
  readonly rttMs: number | undefined;
  /** For failed trials: the last JSON lines and stderr of both sides, to see why. */
  readonly detail?: {
    readonly host: readonly JsonLine[];
    readonly join: readonly JsonLine[];
    readonly stderr: string;
  };
}

export interface MatrixOptions {
  readonly natTypes?: readonly NatType[];
  readonly lossLevels?: readonly number[];
  /** Trials per pair and loss level, per client (a number, or a function; 0 skips the pair). */
  readonly trials?: number | ((loss: number, client: ClientKind, pair: MatrixPair) => number);
  readonly clients?: readonly ClientKind[];
  /** Loss levels at which the legacy client runs (default: all of `lossLevels`). */
  readonly legacyLossLevels?: readonly number[];
  /** Include two hosts behind one NAT, with and without hairpinning (default true). */
  readonly sameNat?: boolean;
  readonly concurrency?: number;
  /** `--timeout` for the v2 client CLI, when set. */
  readonly v2TimeoutMs?: number;
  /**
   * Let the v2 client relay (its default; peers it cannot punch go through the server).
   * Without it the matrix passes `--no-relay`, so a success is a direct path.
   */
  readonly relay?: boolean;
  readonly onTrial?: (result: TrialResult) => void;
}

export interface PairSummary {
  readonly client: ClientKind;
  readonly pair: string;
  readonly a: NatType;
  readonly b: NatType;
  readonly loss: number;
  readonly expectation: PairExpectation;
  readonly trials: number;
  readonly successes: number;
  readonly paths: Readonly<Record<string, number>>;
  readonly codes: Readonly<Record<string, number>>;
  readonly medianTimeToPunchMs: number | undefined;
  /** The 99th percentile of `timeToPunchMs` (the slowest trial when there are fewer than 100). */
  readonly p99TimeToPunchMs: number | undefined;
  /** Share of the successful trials in which neither side went through the relay. */
  readonly directShare: number | undefined;
  readonly maxTimeToFailMs: number | undefined;
}

export interface MatrixReport {
  readonly startedAt: string;
  readonly durationMs: number;
  readonly lossLevels: readonly number[];
  readonly verdicts: readonly SiteVerdict[];
  readonly results: readonly TrialResult[];
  readonly summary: readonly PairSummary[];
}

/** The lab the matrix needs: two sites per NAT type, plus two 2-host sites (hairpin or not). */
export function matrixLabSpec(
  natTypes: readonly NatType[] = MATRIX_NAT_TYPES,
  sameNat = true,
): LabSpec {
  const sites: SiteSpec[] = [];
  for (const nat of natTypes) {
    sites.push({ name: `${SHORT_NAME[nat]}-a`, nat }, { name: `${SHORT_NAME[nat]}-b`, nat });
  }
  if (sameNat) {
    sites.push(
      { name: 'same-hairpin', nat: 'port-restricted', hosts: 2, hairpin: true },
      { name: 'same-nohairpin', nat: 'port-restricted', hosts: 2, hairpin: false },
    );
  }
  return { sites };
}

export function matrixPairs(
  natTypes: readonly NatType[] = MATRIX_NAT_TYPES,
  sameNat = true,
): MatrixPair[] {
  const pairs: MatrixPair[] = [];
  natTypes.forEach((a, i) => {
    for (const b of natTypes.slice(i)) {
      pairs.push({
        id: `${a}<->${b}`,
        a,
        b,
        hostA: `${SHORT_NAME[a]}-a`,
        hostB: `${SHORT_NAME[b]}-b`,
        sameNat: undefined,
      });
    }
  });
  if (sameNat) {
    for (const [site, kind] of [
      ['same-hairpin', 'hairpin'],
      ['same-nohairpin', 'no-hairpin'],
    ] as const) {
      pairs.push({
        id: `same-nat(${kind})`,
        a: 'port-restricted',
        b: 'port-restricted',
        hostA: site,
        hostB: `${site}/1`,
        sameNat: kind,
      });
    }
  }
  return pairs;
}

/**
 * What a pair should do. Our client: RFC 4787 (`expectPair`); behind one NAT it has the
 * private addresses, so it always has a path. The original plugin only ever tries the
 * public endpoint, listening on the public port it was told (so only port-keeping NATs), and
 * two hosts behind one NAT share its fixed local port (the second is moved to another port).
 */
export function expectationFor(client: ClientKind, pair: MatrixPair): PairExpectation {
  if (client === 'v2') {
    if (pair.sameNat !== undefined || isPair(pair, BIRTHDAY_PAIRS)) return 'direct';
    if (isPair(pair, BIRTHDAY_RACY_PAIRS)) return 'racy';
    if (isPair(pair, SWEEP_PAIRS)) return 'direct';
    return expectPair(pair.a, pair.b);
  }
  if (pair.sameNat !== undefined) return 'relay-only';
  const keeps = (t: NatType) =>
    NAT_BEHAVIOUR[t].keepsPort && NAT_BEHAVIOUR[t].mapping === 'endpoint-independent';
  if (!keeps(pair.a) || !keeps(pair.b)) return 'relay-only';
  // It never answers the port a packet came from, so a moved port breaks it whoever the peer.
  if (NAT_BEHAVIOUR[pair.a].remapsOnCollision || NAT_BEHAVIOUR[pair.b].remapsOnCollision)
    return 'racy';
  return expectPair(pair.a, pair.b);
}

/**
 * Pairs the v2 client reaches directly by birthday probing (docs/protocol-v2.md §6,
 * "Strategy") although RFC 4787 alone says relay: a random-port side against an
 * endpoint-independent mapping with a port-dependent filter. Only the pairs measured in the
 * lab (docs/natlab.md, "Birthday probing") are listed; the other endpoint-independent types
 * with such a filter (`fast-expiry`, `double-nat`) are not claimed.
 */
const BIRTHDAY_PAIRS: readonly (readonly [NatType, NatType])[] = [['port-restricted', 'symmetric']];
/**
 * Pairs the v2 client reaches directly by the sweep (docs/protocol-v2.md §6, "Strategy"):
 * `symmetric-sequential` against an endpoint-independent mapping with a port-dependent
 * filter, racy by RFC 4787 alone (the sequential side's next port must be guessed). Measured
 * in the lab with and without the relay (docs/natlab.md, "Sequential ports").
 */
const SWEEP_PAIRS: readonly (readonly [NatType, NatType])[] = [
  ['port-restricted', 'symmetric-sequential'],
  ['fast-expiry', 'symmetric-sequential'],
  ['double-nat', 'symmetric-sequential'],
];
/**
 * Racy pairs the relay tests run. `port-restricted-accepting` measures `edm-random` when the
 * classification provokes its port collision (protocol-v2 §6), and then gets the relay at
 * once against `symmetric`; when all three provoking answers are lost it measures `eim`, and
 * birthday probing against it fails without the relay (its router re-maps the host's port
 * when the hard side's punches arrive first).
 */
const BIRTHDAY_RACY_PAIRS: readonly (readonly [NatType, NatType])[] = [
  ['port-restricted-accepting', 'symmetric'],
];
/**
 * Racy by RFC 4787 (whose punch arrives first), direct by birthday probing once the
 * accepting side measured `edm-random`; without loss in every trial measured, 18/20 at 30 %
 * (docs/natlab.md, "The accepting router"). Not `direct`: the matrix test's 95 % at 30 % loss
 * is not met.
 */
export const ACCEPTING_BIRTHDAY_PAIR: readonly [NatType, NatType] = [
  'port-restricted',
  'port-restricted-accepting',
];

function isPair(pair: MatrixPair, pairs: readonly (readonly [NatType, NatType])[]): boolean {
  return pairs.some(([x, y]) => (pair.a === x && pair.b === y) || (pair.a === y && pair.b === x));
}

let sessionCounter = 0;

function clientArgv(
  client: ClientKind,
  role: 'host' | 'join',
  session: string,
  server: string,
  timeoutMs: number | undefined,
  relay = false,
) {
  // Names are unique per trial (the legacy protocol's names are global across sessions).
  const name = `${role}-${session}`;
  const cli = client === 'legacy' ? LEGACY_CLIENT_CLI_PATH : CLIENT_CLI_PATH;
  const argv = ['node', cli, role, session, '--server', server, '--name', name];
  argv.push('--nickname', name, '--json');
  if (role === 'host') argv.push('--max-players', '2');
  // The legacy client's own timings are the original's; it only gets the lab's outer bound.
  const timeout = client === 'legacy' ? LEGACY_TIMEOUT_MS : timeoutMs;
  if (timeout !== undefined) argv.push('--timeout', String(timeout));
  // The v2 client relays by default; the matrix's direct claims must be direct, so without
  // `relay` it punches alone.
  if (!relay && client === 'v2') argv.push('--no-relay');
  return argv;
}

/** The lines each client kind prints (both CLIs share registered, punched, rtt and failed). */
function linesOf(client: ClientKind): CliName & ('client' | 'legacy-client') {
  return client === 'legacy' ? 'legacy-client' : 'client';
}

function received(lines: readonly JsonLine[], cli: 'client' | 'legacy-client'): number {
  const rtts: RttLine[] = [];
  for (const line of lines) {
    const parsed = toCliLine(cli, line);
    if (parsed.ok && parsed.line.event === 'rtt') rtts.push(parsed.line);
  }
  if (rtts.length === 0) return 0;
  return Math.min(...rtts.map((l) => l.received));
}

/** Runs one host/join attempt between two lab hosts and judges it. */
export async function runTrial(
  lab: Lab,
  client: ClientKind,
  pair: MatrixPair,
  loss: number,
  trial: number,
  options: { v2TimeoutMs?: number; relay?: boolean } = {},
): Promise<TrialResult> {
  sessionCounter += 1;
  const session = `m${process.pid}x${sessionCounter}`;
  const server = `${SERVER_ADDRESS}:${lab.serverPort ?? 4000}`;
  const swap = trial % 2 === 1;
  const hostAt = swap ? pair.hostB : pair.hostA;
  const joinAt = swap ? pair.hostA : pair.hostB;
  const hostStart = performance.now();
  const host = lab.spawn(
    hostAt,
    clientArgv(client, 'host', session, server, options.v2TimeoutMs, options.relay),
    {
      timeoutMs: TRIAL_HARD_LIMIT_MS,
    },
  );
  const cli = linesOf(client);
  const registered = await host.waitForLine(
    (l) => isCliEvent(l, cli, 'registered', 'failed'),
    REGISTER_WAIT_MS,
  );
  const joinStart = performance.now();
  const join =
    registered !== undefined && isCliEvent(registered, cli, 'registered')
      ? lab.spawn(
          joinAt,
          clientArgv(client, 'join', session, server, options.v2TimeoutMs, options.relay),
          {
            timeoutMs: TRIAL_HARD_LIMIT_MS,
          },
        )
      : undefined;
  if (join === undefined) host.kill();
  const [hr, jr] = await Promise.all([host.exited, join?.exited]);
  // Times of a line, relative to the joiner's start.
  const at = (proc: typeof host, start: number, event: 'punched') => {
    const i = proc.lines.findIndex((l) => isCliEvent(l, cli, event));
    const t = proc.lineTimesMs[i];
    return i < 0 || t === undefined ? undefined : start + t - joinStart;
  };
  const hostPunched = findCliLine(hr.lines, cli, 'punched');
  const joinPunched = jr === undefined ? undefined : findCliLine(jr.lines, cli, 'punched');
  const hostReceived = received(hr.lines, cli);
  const joinReceived = jr === undefined ? 0 : received(jr.lines, cli);
  const ok =
    hr.code === 0 &&
    jr?.code === 0 &&
    hostPunched !== undefined &&
    joinPunched !== undefined &&
    hostReceived > 0 &&
    joinReceived > 0;
  const hostPunchAt = at(host, hostStart, 'punched');
  const joinPunchAt = join === undefined ? undefined : at(join, joinStart, 'punched');
  const failed =
    (jr === undefined ? undefined : findCliLine(jr.lines, cli, 'failed')) ??
    findCliLine(hr.lines, cli, 'failed');
  let code: string | undefined;
  if (!ok) {
    if (hr.timedOut || jr?.timedOut === true) code = 'hang';
    else if (registered === undefined) code = 'host_not_registered';
    else if (failed !== undefined) code = failed.code;
    else if (hostPunched !== undefined && joinPunched !== undefined) code = 'no_game_datagrams';
    else code = `exit_${hr.code}_${jr?.code ?? 'none'}`;
  }
  const exitAt = (r: typeof hr | undefined, start: number) =>
    r === undefined ? 0 : start + r.elapsedMs - joinStart;
  const rtt = findCliLine(jr?.lines ?? [], cli, 'rtt')?.rttMs;
  return {
    client,
    pair: pair.id,
    a: pair.a,
    b: pair.b,
    loss,
    trial,
    hostAt,
    joinAt,
    expectation: expectationFor(client, pair),
    ok,
    hostPath: hostPunched?.peers[0]?.path,
    joinPath: joinPunched?.peers[0]?.path,
    timeToPunchMs:
      ok && hostPunchAt !== undefined && joinPunchAt !== undefined
        ? Math.round(Math.max(hostPunchAt, joinPunchAt))
        : undefined,
    hostElapsedMs:
      typeof hostPunched?.elapsedMs === 'number' ? Math.round(hostPunched.elapsedMs) : undefined,
    joinElapsedMs:
      typeof joinPunched?.elapsedMs === 'number' ? Math.round(joinPunched.elapsedMs) : undefined,
    code,
    timeToFailMs: ok
      ? undefined
      : Math.round(Math.max(exitAt(hr, hostStart), exitAt(jr, joinStart))),
    hostReceived,
    joinReceived,
    rttMs: typeof rtt === 'number' ? rtt : undefined,
    ...(ok
      ? {}
      : {
          detail: {
            host: hr.lines.slice(-6),
            join: jr?.lines.slice(-6) ?? [],
            stderr: `${hr.stderr.slice(-500)}${jr?.stderr.slice(-500) ?? ''}`,
          },
        }),
  };
}

interface Job {
  readonly sites: readonly string[];
  /** Legacy clients bind a fixed port and start from flushed NAT state: they own their sites. */
  readonly exclusive: boolean;
  readonly run: () => Promise<void>;
}

/** Runs jobs with at most `limit` at once, never sharing a site with an exclusive job. */
async function schedule(jobs: Job[], limit: number): Promise<void> {
  const shared = new Map<string, number>();
  const owned = new Set<string>();
  const queue = [...jobs];
  let running = 0;
  await new Promise<void>((resolve, reject) => {
    const canRun = (job: Job) =>
      job.sites.every((s) => !owned.has(s)) &&
      (!job.exclusive || job.sites.every((s) => (shared.get(s) ?? 0) === 0));
    const pump = () => {
      if (queue.length === 0 && running === 0) {
        resolve();
        return;
      }
      for (let i = 0; i < queue.length && running < limit; ) {
        const job = queue[i];
        if (job === undefined || !canRun(job)) {
          i++;
          continue;
        }
        queue.splice(i, 1);
        running += 1;
        for (const s of job.sites) {
          if (job.exclusive) owned.add(s);
          else shared.set(s, (shared.get(s) ?? 0) + 1);
        }
        job
          .run()
          .then(() => {
            running -= 1;
            for (const s of job.sites) {
              if (job.exclusive) owned.delete(s);
              else shared.set(s, (shared.get(s) ?? 1) - 1);
            }
            pump();
          })
          .catch(reject);
      }
    };
    pump();
  });
}

/**
 * Runs the end-to-end matrix in a built lab (see `matrixLabSpec`): our server in the public
 * namespace, host and joiner in the host namespaces, every pair, every loss level.
 */
export async function runMatrix(lab: Lab, options: MatrixOptions = {}): Promise<MatrixReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const natTypes = options.natTypes ?? MATRIX_NAT_TYPES;
  const lossLevels = options.lossLevels ?? DEFAULT_LOSS_LEVELS;
  const clients = options.clients ?? CLIENT_KINDS;
  const pairs = matrixPairs(natTypes, options.sameNat ?? true);
  const trialsFor = (loss: number, client: ClientKind, pair: MatrixPair) =>
    typeof options.trials === 'function'
      ? options.trials(loss, client, pair)
      : (options.trials ?? 5);
  if (lab.serverPort === undefined) await lab.startServer();
  const results: TrialResult[] = [];
  for (const loss of lossLevels) {
    for (const site of lab.sites) await lab.setLoss(site.name, loss);
    const jobs: Job[] = [];
    for (const client of clients) {
      if (
        client === 'legacy' &&
        options.legacyLossLevels !== undefined &&
        !options.legacyLossLevels.includes(loss)
      )
        continue;
      for (const pair of pairs) {
        const sites = [
          ...new Set([pair.hostA.split('/')[0] ?? '', pair.hostB.split('/')[0] ?? '']),
        ];
        for (let trial = 0; trial < trialsFor(loss, client, pair); trial++) {
          jobs.push({
            sites,
            exclusive: client === 'legacy',
            run: async () => {
              if (client === 'legacy') for (const s of sites) await lab.flushConntrack(s);
              const result = await runTrial(lab, client, pair, loss, trial, {
                v2TimeoutMs: options.v2TimeoutMs,
                relay: options.relay,
              });
              results.push(result);
              options.onTrial?.(result);
            },
          });
        }
      }
    }
    await schedule(jobs, options.concurrency ?? DEFAULT_CONCURRENCY);
  }
  for (const site of lab.sites) await lab.setLoss(site.name, 0);
  return {
    startedAt,
    durationMs: Math.round(performance.now() - started),
    lossLevels,
    verdicts: lab.verdicts,
    results,
    summary: summarize(
      results,
      clients,
      pairs.map((p) => p.id),
      lossLevels,
    ),
  };
}

function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Per client, pair and loss level, in the order given (results arrive in completion order). */
export function summarize(
  results: readonly TrialResult[],
  clientOrder: readonly ClientKind[] = CLIENT_KINDS,
  pairOrder: readonly string[] = [],
  lossOrder: readonly number[] = DEFAULT_LOSS_LEVELS,
): PairSummary[] {
  const groups = new Map<string, TrialResult[]>();
  const rank = (r: TrialResult) => [
    clientOrder.indexOf(r.client),
    pairOrder.indexOf(r.pair),
    lossOrder.indexOf(r.loss),
  ];
  const sorted = [...results].sort((x, y) => {
    const [a, b] = [rank(x), rank(y)];
    return (a[0] ?? 0) - (b[0] ?? 0) || (a[1] ?? 0) - (b[1] ?? 0) || (a[2] ?? 0) - (b[2] ?? 0);
  });
  for (const r of sorted) {
    const key = `${r.client}|${r.pair}|${r.loss}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out: PairSummary[] = [];
  for (const group of groups.values()) {
    const first = group[0];
    if (first === undefined) continue;
    const paths: Record<string, number> = {};
    const codes: Record<string, number> = {};
    for (const r of group) {
      if (r.ok) {
        const path =
          r.joinPath === r.hostPath
            ? (r.joinPath ?? '?')
            : `${r.hostPath ?? '?'}/${r.joinPath ?? '?'}`;
        paths[path] = (paths[path] ?? 0) + 1;
      } else {
        codes[r.code ?? '?'] = (codes[r.code ?? '?'] ?? 0) + 1;
      }
    }
    const fails = group.flatMap((r) => (r.timeToFailMs === undefined ? [] : [r.timeToFailMs]));
    const times = group.flatMap((r) => (r.timeToPunchMs === undefined ? [] : [r.timeToPunchMs]));
    const successes = group.filter((r) => r.ok);
    const direct = successes.filter((r) => r.hostPath !== 'relay' && r.joinPath !== 'relay');
    out.push({
      client: first.client,
      pair: first.pair,
      a: first.a,
      b: first.b,
      loss: first.loss,
      expectation: first.expectation,
      trials: group.length,
      successes: successes.length,
      paths,
      codes,
      medianTimeToPunchMs: percentile(times, 0.5),
      p99TimeToPunchMs: percentile(times, 0.99),
      directShare: successes.length === 0 ? undefined : direct.length / successes.length,
      maxTimeToFailMs: fails.length === 0 ? undefined : Math.max(...fails),
    });
  }
  return out;
}

const top = (counts: Readonly<Record<string, number>>) =>
  Object.entries(counts)
    .sort((x, y) => y[1] - x[1])
    .map(([k, n]) => `${k}×${n}`)
    .join(',');

/**
 * One row per client and pair, one column per loss level: `ok/trials`, paths, the direct share,
 * and the time to connect (p50, p99).
 */
export function formatMatrix(
  summary: readonly PairSummary[],
  lossLevels: readonly number[],
): string {
  const rows: string[][] = [];
  const keys = [...new Set(summary.map((s) => `${s.client}|${s.pair}`))];
  for (const key of keys) {
    const cells = summary.filter((s) => `${s.client}|${s.pair}` === key);
    const first = cells[0];
    if (first === undefined) continue;
    rows.push([
      first.client,
      first.pair,
      first.expectation,
      ...lossLevels.map((loss) => {
        const s = cells.find((c) => c.loss === loss);
        if (s === undefined) return '-';
        const parts = [`${s.successes}/${s.trials}`];
        if (s.successes > 0) {
          parts.push(
            top(s.paths),
            `direct ${Math.round((s.directShare ?? 0) * 100)}%`,
            `p50 ${s.medianTimeToPunchMs ?? '?'} ms p99 ${s.p99TimeToPunchMs ?? '?'} ms`,
          );
        }
        if (s.successes < s.trials) {
          parts.push(`fail: ${top(s.codes)}`);
          if (s.maxTimeToFailMs !== undefined)
            parts.push(`≤${(s.maxTimeToFailMs / 1000).toFixed(1)} s`);
        }
        return parts.join(' ');
      }),
    ]);
  }
  return markdownTable(
    ['client', 'pair', 'expected', ...lossLevels.map((l) => `loss ${Math.round(l * 100)}%`)],
    rows,
  );
}

export async function writeResults(
  report: MatrixReport,
  file = `${RESULTS_DIR}latest.json`,
): Promise<string> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
