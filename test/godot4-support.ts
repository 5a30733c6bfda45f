/**
 * Shared by the Godot 4 addon suites (test/godot4-*.test.ts): where Godot 4 is (the Debian-sid
 * chroot that scripts/setup-godot.sh builds), temp projects inside it (removed on teardown and
 * on exit), and processes bounded in time that print one JSON object per line.
 *
 * No test lives here; `node --test dist/test/` loads it as an empty file.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isServerRecord, SERVER_CLI_PATH } from '../src/cli/index.js';
import {
  type JsonLine,
  type JsonProcess,
  spawnJsonProcess,
  withNodeBinary,
} from '../src/natlab/index.js';
import { labSuitesRanElsewhere } from './suites.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const GODOT4_ROOT = process.env.HOLEPUNCH_GODOT4_ROOT ?? '/opt/holepunch-godot4-root';
export const ADDON_DIR = join(REPO_ROOT, 'godot', 'addons', 'holepunch');

/** Why Godot 4 cannot run here (empty when it can). */
export function godot4UnavailableReasons(): string[] {
  const reasons: string[] = [];
  if (process.getuid?.() !== 0) reasons.push('running Godot 4 in its chroot needs root');
  if (!existsSync(join(GODOT4_ROOT, 'usr', 'bin', 'godot')))
    reasons.push(`no Godot 4 chroot at ${GODOT4_ROOT} (run scripts/setup-godot.sh as root)`);
  return reasons;
}

/** `skip` for describe(): a reason locally, false under CI=true (which must run, or fail). */
export function skipUnless(reasons: readonly string[], what: string): string | false {
  const ranElsewhere = labSuitesRanElsewhere();
  if (ranElsewhere) return ranElsewhere;
  return reasons.length > 0 && process.env.CI !== 'true'
    ? `${what} unavailable: ${reasons.join('; ')}`
    : false;
}

const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

export interface Project {
  /** The directory on this machine. */
  readonly dir: string;
  /** The same directory as Godot in the chroot sees it. */
  readonly inEngine: string;
}

/**
 * A temp Godot 4 project inside the chroot: `project.godot` with `mainScene` (or none), the
 * addon under addons/holepunch, and `extra` directories copied to the given subpaths.
 */
export async function makeProject(
  name: string,
  options: { mainScene?: string; from?: string; extra?: readonly [string, string][] } = {},
): Promise<Project> {
  const dir = await mkdtemp(join(GODOT4_ROOT, 'tmp', `hp-godot4-${name}-`));
  tempDirs.add(dir);
  if (options.from !== undefined)
    await cp(options.from, dir, { recursive: true, dereference: true });
  await mkdir(join(dir, 'addons'), { recursive: true });
  await rm(join(dir, 'addons', 'holepunch'), { recursive: true, force: true });
  await cp(ADDON_DIR, join(dir, 'addons', 'holepunch'), { recursive: true });
  for (const [src, dest] of options.extra ?? [])
    await cp(src, join(dir, dest), { recursive: true });
  if (options.from === undefined) {
    const main = options.mainScene === undefined ? '' : `run/main_scene="${options.mainScene}"\n`;
    await writeFile(
      join(dir, 'project.godot'),
      `config_version=5\n\n[application]\n\nconfig/name="${name}"\n${main}\n[audio]\n\ndriver/driver="Dummy"\n`,
    );
  }
  await mkdir(join(dir, 'home'), { recursive: true });
  return { dir, inEngine: dir.slice(GODOT4_ROOT.length) };
}

/** Removes every temp project made so far. */
export async function removeProjects(): Promise<void> {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** argv running Godot 4 headless on `project` (inside the chroot), with `env` set. */
export function godot4Argv(
  project: Project,
  env: Record<string, string> = {},
  args: readonly string[] = [],
): string[] {
  const home = `${project.inEngine}/home`;
  return [
    'env',
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    `HOME=${home}`,
    `XDG_CONFIG_HOME=${home}/.config`,
    `XDG_DATA_HOME=${home}/.local/share`,
    `XDG_CACHE_HOME=${home}/.cache`,
    'chroot',
    GODOT4_ROOT,
    'godot',
    '--headless',
    '--path',
    project.inEngine,
    ...args,
  ];
}

export type { JsonLine };
/** A process the Godot suites run on this machine: the NAT lab's JSON-line runner, unchanged. */
export type Proc = JsonProcess;

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Spawns `argv` (`node` = this Node) here, killed after `timeoutMs`; collects JSON lines. */
export function spawnJson(argv: readonly string[], timeoutMs: number): Proc {
  const { process: proc, child } = spawnJsonProcess(withNodeBinary(argv), timeoutMs);
  live.add(child);
  child.on('close', () => live.delete(child));
  return proc;
}

/** Starts our rendezvous server on 127.0.0.1 (a free port); resolves with it and its port. */
export async function startLoopbackServer(autostart = true): Promise<{ proc: Proc; port: number }> {
  const proc = spawnJson(
    [
      'node',
      SERVER_CLI_PATH,
      '0',
      autostart ? 'y' : 'n',
      '--host',
      '127.0.0.1',
      '--log-level',
      'info',
    ],
    600_000,
  );
  const ready = await proc.waitForLine((l) => isServerRecord(l, 'listening'), 15_000);
  if (ready === undefined || !isServerRecord(ready, 'listening')) {
    proc.kill();
    throw new Error(`the server did not start: ${(await proc.exited).stderr.slice(0, 2_000)}`);
  }
  return { proc, port: ready.port };
}

/** Script errors Godot printed on stderr (a GDScript bug must fail the test, not hide). */
export function scriptErrors(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => /SCRIPT ERROR|Parse Error|Failed to load script/.test(l))
    .map((l) => l.trim());
}
