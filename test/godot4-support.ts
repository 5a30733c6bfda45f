/**
 * Shared by the Godot 4 addon suites (test/godot4-*.test.ts): where Godot 4 is (the Debian-sid
 * chroot that scripts/setup-godot.sh builds), temp projects inside it (removed on teardown and
 * on exit), and processes bounded in time that print one JSON object per line.
 *
 * No test lives here; `node --test dist/test/` loads it as an empty file.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import {
  CLIENT_CLI_PATH,
  DEFAULT_SERVER_PORT,
  type Godot4Project,
  godot4Argv,
  type JsonLine,
  type JsonProcess,
  type Lab,
  type LabProcess,
  REPO_ROOT,
  SERVER_ADDRESS,
  spawnJsonProcess,
  startLoopbackServer as startServerWith,
  withNodeBinary,
} from '../src/natlab/index.js';

// Where Godot 4 is, its temp projects and its argv live in src/natlab/godot4.ts (the benchmark
// starts the same driver game); the suites keep their short names.
export {
  GODOT4_ADDON_DIR as ADDON_DIR,
  GODOT4_ROOT,
  godot4Argv,
  godot4EngineErrors as engineErrors,
  godot4ImportArgv as importArgv,
  godot4ScriptErrors as scriptErrors,
  godot4UnavailableReasons,
  makeGodot4Project as makeProject,
  REPO_ROOT,
  removeGodot4Projects as removeProjects,
} from '../src/natlab/index.js';
export type Project = Godot4Project;

export { skipUnless } from './suites.js';

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
export function startLoopbackServer(autostart = true): Promise<{ proc: Proc; port: number }> {
  return startServerWith(spawnJson, { autostart });
}

/** The Godot project in the repository (godot/: the addon and its demo, issue 21 point 6). */
export const GODOT_PROJECT = join(REPO_ROOT, 'godot');

/** The test driver game (godot/tests/driver) and the bounds of one of its runs in the NAT lab. */
export const LAB_DRIVER = join(REPO_ROOT, 'godot', 'tests', 'driver');
export const LAB_DEADLINE_MS = 40_000;
export const LAB_KILL_AFTER_MS = LAB_DEADLINE_MS + 10_000;

/** A driver game player at lab site `at`, against the lab's server; `config` adds to its own. */
export function spawnLabGodot(
  lab: Lab,
  at: string,
  project: Project,
  config: Record<string, unknown>,
): LabProcess {
  const full = {
    server: SERVER_ADDRESS,
    port: DEFAULT_SERVER_PORT,
    timeout_ms: 30_000,
    deadline_ms: LAB_DEADLINE_MS,
    ...config,
  };
  return lab.spawn(at, godot4Argv(project, { HP_DRIVER: JSON.stringify(full) }), {
    timeoutMs: LAB_KILL_AFTER_MS,
  });
}

/** The Node CLI joining `session` as `bob` from lab site `at`, JSON lines; `extra` adds flags. */
export function spawnLabNodeJoiner(
  lab: Lab,
  at: string,
  session: string,
  extra: readonly string[] = [],
): LabProcess {
  const server = `${SERVER_ADDRESS}:${DEFAULT_SERVER_PORT}`;
  const argv = ['node', CLIENT_CLI_PATH, 'join', session, '--server', server, '--name', 'bob'];
  argv.push('--timeout', '30000', ...extra, '--json');
  return lab.spawn(at, argv, { timeoutMs: LAB_KILL_AFTER_MS });
}
