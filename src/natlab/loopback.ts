/**
 * Our rendezvous server as a child process on 127.0.0.1 (a free port), for runs outside the
 * lab's namespaces: the Godot suites and the benchmark's Godot phase.
 */
import { isServerRecord, SERVER_CLI_PATH } from '../cli/index.js';
import type { JsonProcess } from './json-process.js';

/** How the caller starts a process (so it can track and kill its children). */
export type SpawnJson = (argv: readonly string[], timeoutMs: number) => JsonProcess;

/**
 * Starts the server with `spawn` (argv[0] `node`), killed after `lifetimeMs`; resolves once it
 * listens, with its port. Throws (having killed it) when it does not start.
 */
export async function startLoopbackServer(
  spawn: SpawnJson,
  options: { autostart?: boolean; logLevel?: string; lifetimeMs?: number } = {},
): Promise<{ proc: JsonProcess; port: number }> {
  const proc = spawn(
    [
      'node',
      SERVER_CLI_PATH,
      '0',
      options.autostart === false ? 'n' : 'y',
      '--host',
      '127.0.0.1',
      '--log-level',
      options.logLevel ?? 'info',
    ],
    options.lifetimeMs ?? 600_000,
  );
  const ready = await proc.waitForLine((l) => isServerRecord(l, 'listening'), 15_000);
  if (ready === undefined || !isServerRecord(ready, 'listening')) {
    proc.kill();
    throw new Error(`the server did not start: ${(await proc.exited).stderr.slice(0, 2_000)}`);
  }
  return { proc, port: ready.port };
}
