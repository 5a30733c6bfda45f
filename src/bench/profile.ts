/**
 * Summarises a V8 `.cpuprofile` (written by `node --cpu-prof`) into the functions that spent
 * the most CPU themselves ("self time"), the view that says where a hot path goes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface ProfileEntry {
  /** `name (file:line)`, the file relative to the repository where possible. */
  readonly function: string;
  readonly selfMs: number;
  /** Share of all non-idle samples, in percent. */
  readonly selfPercent: number;
}

export interface ProfileSummary {
  readonly file: string;
  /** Profiled time excluding `(idle)`, ms. */
  readonly busyMs: number;
  readonly top: readonly ProfileEntry[];
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName === '' ? '(anonymous)' : functionName;
  if (url === '') return name;
  const marker = url.lastIndexOf('/dist/');
  const file = marker === -1 ? url.replace(/^.*\/node_modules\//, '') : url.slice(marker + 1);
  return `${name} (${file.replace(/^node:/, 'node:')}:${lineNumber + 1})`;
}

/** Self time per function of one profile, largest first. */
export function summariseProfile(path: string, topCount: number): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byId.set(node.id, node);
  const selfUs = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let busyUs = 0;
  // timeDeltas[i] is the time before sample i; attribute the gap after a sample to it.
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i] as number);
    if (node === undefined) continue;
    const us = Math.max(0, deltas[i + 1] ?? 0);
    const key = label(node);
    if (key === '(idle)') continue;
    busyUs += us;
    selfUs.set(key, (selfUs.get(key) ?? 0) + us);
  }
  const top = [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topCount)
    .map(([fn, us]) => ({
      function: fn,
      selfMs: Math.round(us / 100) / 10,
      selfPercent: busyUs === 0 ? 0 : Math.round((us / busyUs) * 1000) / 10,
    }));
  return { file: path, busyMs: Math.round(busyUs / 1000), top };
}

/** The newest `.cpuprofile` in `dir`, or undefined. */
export function newestProfile(dir: string): string | undefined {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort();
  const last = files.at(-1);
  return last === undefined ? undefined : join(dir, last);
}
