import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Linux's USER_HZ on every mainstream architecture; used when `getconf` is unavailable. */
const DEFAULT_CLOCK_TICKS_PER_S = 100;

let clockTicksPerS: number | undefined;

/** `getconf CLK_TCK`: the unit of utime/stime in /proc/PID/stat. */
export function clockTicks(): number {
  if (clockTicksPerS === undefined) {
    try {
      const text = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 });
      const value = Number(text.trim());
      clockTicksPerS = Number.isInteger(value) && value > 0 ? value : DEFAULT_CLOCK_TICKS_PER_S;
    } catch {
      clockTicksPerS = DEFAULT_CLOCK_TICKS_PER_S;
    }
  }
  return clockTicksPerS;
}

/**
 * CPU time (user + system) a process has used so far, in microseconds, from /proc/PID/stat.
 * The same source for the server, the echo reference and the load generator, so the three
 * are measured with the same clock-tick granularity.
 */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1_000_000) / clockTicks();
}

/** Resident set size in bytes, from the `VmRSS` line of /proc/PID/status. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/**
 * CPU time the whole machine spent busy (all cores, every process, interrupts included), µs,
 * from the `cpu` line of /proc/stat: everything but idle and iowait.
 */
export function machineBusyMicros(): number {
  const stat = readFileSync('/proc/stat', 'latin1');
  const line = stat.slice(0, stat.indexOf('\n'));
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guests are inside user.
  const busy =
    (ticks[0] ?? 0) +
    (ticks[1] ?? 0) +
    (ticks[2] ?? 0) +
    (ticks[5] ?? 0) +
    (ticks[6] ?? 0) +
    (ticks[7] ?? 0);
  return (busy * 1_000_000) / clockTicks();
}

/** A CPU reading of several processes at one instant, with the wall clock beside it. */
export interface CpuSnapshot {
  readonly atMs: number;
  readonly cpuUs: ReadonlyMap<number, number>;
  readonly machineBusyUs: number;
}

export function snapshotCpu(pids: readonly number[]): CpuSnapshot {
  const cpuUs = new Map<number, number>();
  for (const pid of pids) cpuUs.set(pid, cpuMicros(pid));
  return { atMs: performance.now(), cpuUs, machineBusyUs: machineBusyMicros() };
}

/** CPU microseconds a process used between two snapshots. */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot, pid: number): number {
  return (after.cpuUs.get(pid) ?? 0) - (before.cpuUs.get(pid) ?? 0);
}
