/**
 * A child process that prints one JSON object per line, bounded in time: the one runner the
 * NAT lab (inside a namespace) and the tests (on this machine) start programs with. Lines are
 * kept as plain JSON objects, since Godot and Python players print their own; a reader that
 * expects one of our CLIs narrows them with `findCliLine`/`toCliLine` (src/cli/lines.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { parseJsonObject } from '../cli/index.js';

/** One JSON object a process printed on a line of its stdout. */
export type JsonLine = Record<string, unknown>;

export interface ProcessResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly lines: readonly JsonLine[];
  readonly stderr: string;
  readonly elapsedMs: number;
  readonly timedOut: boolean;
}

export interface JsonProcess {
  readonly pid: number | undefined;
  readonly lines: readonly JsonLine[];
  /** When each line arrived, in ms since the process was spawned (same index as `lines`). */
  readonly lineTimesMs: readonly number[];
  readonly exited: Promise<ProcessResult>;
  /** Resolves with the first line matching `match`, or undefined after `timeoutMs` or exit. */
  waitForLine(match: (line: JsonLine) => boolean, timeoutMs: number): Promise<JsonLine | undefined>;
  kill(): void;
}

/** Stderr kept per process: enough to see why it failed, bounded for a chatty one. */
const STDERR_LIMIT = 64 * 1024;

/** `node` as argv[0] means this very Node binary (the lab's namespaces have no PATH to it). */
export function withNodeBinary(argv: readonly string[]): string[] {
  return argv[0] === 'node' ? [process.execPath, ...argv.slice(1)] : [...argv];
}

/**
 * Starts `command` (already resolved: see `withNodeBinary`), SIGKILLed after `timeoutMs`.
 * `child` is returned too, for callers that track their children to kill them on exit.
 */
export function spawnJsonProcess(
  command: readonly string[],
  timeoutMs: number,
): { readonly process: JsonProcess; readonly child: ChildProcess } {
  const started = performance.now();
  const child = spawn(command[0] as string, command.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: JsonLine[] = [];
  const lineTimesMs: number[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let buffered = '';
  let timedOut = false;
  let done = false;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const parsed = parseJsonObject(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      // Not every line a program prints is JSON (Godot's banner, say): only objects count.
      if (!parsed.ok) continue;
      lines.push(parsed.line as JsonLine);
      lineTimesMs.push(performance.now() - started);
      for (const wake of waiters) wake();
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < STDERR_LIMIT) stderr += chunk;
  });
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const exited = new Promise<ProcessResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done = true;
      for (const wake of waiters) wake();
      resolve({ code, signal, lines, stderr, elapsedMs: performance.now() - started, timedOut });
    });
    child.on('error', (error) => {
      stderr += String(error);
    });
  });
  const proc: JsonProcess = {
    pid: child.pid,
    lines,
    lineTimesMs,
    exited,
    kill: () => child.kill('SIGKILL'),
    waitForLine: (match, ms) =>
      new Promise((resolve) => {
        const check = () => {
          const hit = lines.find(match);
          if (hit !== undefined || done) {
            clearTimeout(t);
            waiters.delete(check);
            resolve(hit);
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          resolve(lines.find(match));
        }, ms);
        waiters.add(check);
        check();
      }),
  };
  return { process: proc, child };
}
