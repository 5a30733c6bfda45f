/** A process the benchmark starts (server or echo reference) and measures from outside. */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

/** How long a child may take to print its listening line. */
const STARTUP_TIMEOUT_MS = 10_000;
/** How long a child gets to exit after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 3000;
/** Poll interval while waiting for a child's socket to appear in /proc/net/udp. */
const BIND_POLL_MS = 20;

export interface GcReport {
  readonly collected: boolean;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
}

export interface BenchChild {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** Asks the child (preloaded with gc-hook) to collect garbage; resolves with its memory. */
  collectGarbage(): Promise<GcReport | undefined>;
  /** Whether the process is still running. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL if it lingers; resolves when the process is gone. */
  stop(): Promise<void>;
}

/** Finds a listening port in a JSON log line: `port`, `address.port` or `local.port`. */
export function portFromLine(line: string): number | undefined {
  if (!line.startsWith('{')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  const seen: unknown[] = [parsed];
  // Breadth-first over at most a few dozen nodes: startup lines are small.
  for (let i = 0; i < seen.length && i < 64; i++) {
    const node = seen[i];
    if (node === null || typeof node !== 'object') continue;
    for (const [key, value] of Object.entries(node)) {
      if (key === 'port' && typeof value === 'number' && value > 0 && value < 65536) return value;
      if (typeof value === 'object') seen.push(value);
    }
  }
  return undefined;
}

/** A UDP port that is free on 127.0.0.1 right now (for a child run silent, with no log line). */
export async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** True when some UDP socket (v4 or v6) is bound to `port`, per /proc/net/udp{,6}. */
export function udpPortBound(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let table: string;
    try {
      table = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    for (const line of table.split('\n')) {
      // Columns: sl local_address rem_address ...; the local port ends the 2nd column.
      const local = line.trim().split(/\s+/)[1];
      if (local !== undefined && `${local} `.endsWith(hex)) return true;
    }
  }
  return false;
}

export interface StartChildOptions {
  /** Open an IPC channel (needed for `collectGarbage`). */
  readonly ipc: boolean;
  /**
   * The port the child was told to bind: readiness is then its appearance in /proc/net/udp.
   * Without it, the port is read from the child's first JSON stdout line carrying `port`.
   */
  readonly port?: number;
}

export async function startChild(
  name: string,
  args: readonly string[],
  options: StartChildOptions,
): Promise<BenchChild> {
  const withIpc = options.ipc;
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: withIpc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 4000) stderr += chunk;
  });
  const port = await new Promise<number>((resolve, reject) => {
    const knownPort = options.port;
    if (knownPort !== undefined) {
      const startedAt = performance.now();
      const poll = setInterval(() => {
        if (udpPortBound(knownPort)) {
          clearInterval(poll);
          resolve(knownPort);
        } else if (performance.now() - startedAt > STARTUP_TIMEOUT_MS) {
          clearInterval(poll);
          child.kill('SIGKILL');
          reject(new Error(`${name} did not bind port ${knownPort}: ${stderr}`));
        }
      }, BIND_POLL_MS);
      child.once('exit', (code, signal) => {
        clearInterval(poll);
        reject(new Error(`${name} exited (${code ?? signal}) before listening: ${stderr}`));
      });
      child.stdout?.resume();
      return;
    }
    let buffered = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not report a port within ${STARTUP_TIMEOUT_MS} ms: ${stderr}`));
    }, STARTUP_TIMEOUT_MS);
    child.stdout?.setEncoding('utf8');
    const onData = (chunk: string): void => {
      buffered += chunk;
      let newline = buffered.indexOf('\n');
      while (newline !== -1) {
        const found = portFromLine(buffered.slice(0, newline).trim());
        buffered = buffered.slice(newline + 1);
        if (found !== undefined) {
          clearTimeout(timer);
          // Keep draining stdout so that a chatty child never blocks on a full pipe.
          child.stdout?.off('data', onData);
          child.stdout?.resume();
          resolve(found);
          return;
        }
        newline = buffered.indexOf('\n');
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening: ${stderr}`));
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name} has no pid`);

  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    name,
    pid,
    port,
    alive,
    async collectGarbage() {
      if (!withIpc || !child.connected) return undefined;
      const reply = new Promise<GcReport | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), STARTUP_TIMEOUT_MS);
        child.once('message', (message: { type?: string } & GcReport) => {
          clearTimeout(timer);
          resolve(message.type === 'gc-done' ? message : undefined);
        });
      });
      child.send('gc');
      return reply;
    },
    async stop() {
      if (!alive()) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
