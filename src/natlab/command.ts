import { execFile, execFileSync } from 'node:child_process';

/** No single `ip`/`iptables` call of the lab should take long; a hung one is a bug. */
const COMMAND_TIMEOUT_MS = 20_000;

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command without a shell (arguments are never re-parsed) and resolves with its output. */
export function runCommand(
  argv: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('empty command'));
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code =
          error === null ? 0 : typeof error.code === 'number' ? error.code : error.killed ? 124 : 1;
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr) || String(error?.message ?? ''),
        });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Like `runCommand`, but a non-zero exit is an error carrying the command and its stderr. */
export async function mustRun(
  argv: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const result = await runCommand(argv, options);
  if (result.code !== 0) {
    throw new Error(`command failed (${result.code}): ${argv.join(' ')}\n${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** Synchronous variant for exit and signal handlers, where no promise will ever settle. */
export function runCommandSync(argv: readonly string[]): boolean {
  const [file, ...args] = argv;
  if (file === undefined) return false;
  try {
    execFileSync(file, args, { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
    return true;
  } catch {
    return false;
  }
}
