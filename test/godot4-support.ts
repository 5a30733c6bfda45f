/**
 * Shared by the Godot 4 addon suites (test/godot4-*.test.ts): where Godot 4 is (the Debian-sid
 * chroot that scripts/setup-godot.sh builds), temp projects inside it (removed on teardown and
 * on exit), and processes bounded in time that print one JSON object per line.
 *
 * No test lives here; `node --test dist/test/` loads it as an empty file.
 */
import type { ChildProcess } from 'node:child_process';
import {
  type Godot4Project,
  type JsonLine,
  type JsonProcess,
  spawnJsonProcess,
  startLoopbackServer as startServerWith,
  withNodeBinary,
} from '../src/natlab/index.js';
import { labSuitesRanElsewhere } from './suites.js';

// Where Godot 4 is, its temp projects and its argv live in src/natlab/godot4.ts (the benchmark
// starts the same driver game); the suites keep their short names.
export {
  GODOT4_ADDON_DIR as ADDON_DIR,
  GODOT4_ROOT,
  godot4Argv,
  godot4ScriptErrors as scriptErrors,
  godot4UnavailableReasons,
  makeGodot4Project as makeProject,
  REPO_ROOT,
  removeGodot4Projects as removeProjects,
} from '../src/natlab/index.js';
export type Project = Godot4Project;

/** `skip` for describe(): a reason locally, false under CI=true (which must run, or fail). */
export function skipUnless(reasons: readonly string[], what: string): string | false {
  const ranElsewhere = labSuitesRanElsewhere();
  if (ranElsewhere) return ranElsewhere;
  return reasons.length > 0 && process.env.CI !== 'true'
    ? `${what} unavailable: ${reasons.join('; ')}`
    : false;
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
export function startLoopbackServer(autostart = true): Promise<{ proc: Proc; port: number }> {
  return startServerWith(spawnJson, { autostart });
}
