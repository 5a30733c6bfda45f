/**
 * A flood in a process of its own at the lowest CPU priority (`floodInChild`): a real attacker
 * sends from a machine of its own, so here the flood generator must not take CPU from the
 * server it attacks nor from the legit players measured beside it; it still reaches the
 * highest rate one source sends here (the figures report it). Started by `fork`; parameters
 * as one IPC message, the v2 session names to lock as later messages, the result as the last.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type AttackKind, type AttackResult, flood } from './attack.js';

/** Lowest priority (`nice` 19); the kernel runs the flood only where nothing else wants CPU. */
const FLOOD_NICE = 19;
/** How often the parent passes on the session names a lobby-lock flood aims at. */
const NAMES_EVERY_MS = 50;
/** Past its flood's end, a flood process that has not answered is killed. */
const GRACE_MS = 5000;

type ToChild =
  | {
      readonly type: 'start';
      readonly kind: AttackKind;
      readonly port: number;
      readonly ms: number;
      readonly ratePerS: number | undefined;
    }
  | { readonly type: 'names'; readonly names: readonly string[] };
type FromChild =
  | { readonly type: 'flooding' }
  | { readonly type: 'done'; readonly result: AttackResult };

export interface FloodOptions {
  /** The v2 session names a lobby-lock flood aims at, read as it goes. */
  readonly sessionsToLock?: () => readonly string[];
  /** Datagrams a second at most (default: as fast as one source sends here). */
  readonly ratePerS?: number;
}

/** A flood under way in its own process; `result` settles when it has ended. */
export interface RunningFlood {
  readonly result: Promise<AttackResult>;
}

/**
 * Starts `flood(kind, port, ...)` for `ms` in a child process at the lowest priority;
 * resolves once the child is flooding, so legit lobbies measured from then on are all flooded.
 */
export async function startFlood(
  kind: AttackKind,
  port: number,
  ms: number,
  options: FloodOptions = {},
): Promise<RunningFlood> {
  const child = fork(fileURLToPath(import.meta.url), ['--flood-child'], { stdio: 'ignore' });
  if (child.pid !== undefined) setPriority(child.pid, FLOOD_NICE);
  let timer: NodeJS.Timeout | undefined;
  const names = setInterval(() => {
    const list = options.sessionsToLock?.() ?? [];
    if (list.length > 0 && child.connected)
      child.send({ type: 'names', names: list } satisfies ToChild);
  }, NAMES_EVERY_MS);
  let flooding: () => void = () => {};
  const started = new Promise<void>((resolve) => {
    flooding = resolve;
  });
  const finished = new Promise<AttackResult>((resolve, reject) => {
    child.on('message', (m: FromChild) => {
      if (m.type === 'flooding') flooding();
      else resolve(m.result);
    });
    child.once('exit', (code) => reject(new Error(`flood process exited (${code}) early`)));
    child.once('error', reject);
    timer = setTimeout(
      () => reject(new Error(`flood process silent ${GRACE_MS} ms past its end`)),
      ms + GRACE_MS,
    );
  }).finally(() => {
    clearInterval(names);
    clearTimeout(timer);
    child.kill('SIGKILL');
  });
  // Never unhandled: the caller awaits `result`, or the race below throws first.
  finished.catch(() => {});
  child.send({ type: 'start', kind, port, ms, ratePerS: options.ratePerS } satisfies ToChild);
  await Promise.race([started, finished]);
  return { result: finished };
}

/** `startFlood`, awaited to its end. */
export async function floodInChild(
  kind: AttackKind,
  port: number,
  ms: number,
  options: FloodOptions = {},
): Promise<AttackResult> {
  return (await startFlood(kind, port, ms, options)).result;
}

async function runAsChild(): Promise<void> {
  let names: readonly string[] = [];
  process.once('disconnect', () => process.exit(0));
  const [start] = (await once(process, 'message')) as [ToChild];
  if (start.type !== 'start') throw new Error('a flood process starts with its parameters');
  process.on('message', (m: ToChild) => {
    if (m.type === 'names') names = m.names;
  });
  process.send?.({ type: 'flooding' } satisfies FromChild);
  const result = await flood(start.kind, start.port, performance.now() + start.ms, {
    sessionsToLock: () => names,
    ...(start.ratePerS === undefined ? {} : { ratePerS: start.ratePerS }),
  });
  // The parent reads the result, then kills this process; a parent gone ends it too.
  process.send?.({ type: 'done', result } satisfies FromChild);
}

if (process.argv.includes('--flood-child') && process.send !== undefined) await runAsChild();
