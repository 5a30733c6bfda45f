#!/usr/bin/env node
// `holepunch-server [PORT [AUTOSTART]] [options]`: the original's `./server.py PORT AUTOSTART`
// plus flags. Logs are JSON lines (pino) on stdout; the first is `"msg":"listening"`.
import { parseArgs } from 'node:util';
import { type Level, pino } from 'pino';
import { DEFAULT_MAX_PLAYERS_CAP, LEGACY_MAX_PLAYERS } from '../protocol/legacy.js';
import { DEFAULT_MAX_SESSIONS, SESSION_TTL_MS } from '../server/legacy-sessions.js';
import { DEFAULT_PORT, type RunningServer, startServer } from '../server/shell.js';

/** Exit code for invalid arguments (as most Unix tools). */
const EXIT_USAGE = 2;
const EXIT_STARTUP_FAILED = 1;

/** Above this a `peers:` list risks IP fragmentation; the original had no cap at all. */
const MAX_PLAYERS_CAP_LIMIT = 256;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const USAGE = `Usage: holepunch-server [PORT [AUTOSTART]] [options]

Runs the HolePunch UDP rendezvous server, wire-compatible with the original
Godot plugin's server (./server.py PORT AUTOSTART).

Arguments:
  PORT                   UDP port, 0-65535 (0 = any free port, see the
                         "listening" log line). Default ${DEFAULT_PORT}.
  AUTOSTART              y: send peers: as soon as a session is full;
                         n: only when the host sends ep:KEY. Default y.

Options:
  --host ADDRESS         bind address (default: all interfaces, IPv4 and IPv6)
  --session-ttl SECONDS  a session expires this long after rs:; its members
                         get close:Session closed. (default ${SESSION_TTL_MS / 1000})
  --max-sessions N       refuse rs: beyond N open sessions (default ${DEFAULT_MAX_SESSIONS})
  --max-players N        largest MAX a session may ask for, 1-${MAX_PLAYERS_CAP_LIMIT}
                         (default ${DEFAULT_MAX_PLAYERS_CAP}; legacy rs: at most ${LEGACY_MAX_PLAYERS})
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (default info)
  --no-legacy            serve only the v2 protocol: legacy (text) datagrams are
                         dropped and counted. Old Godot games then cannot connect,
                         and nobody can use their unauthenticated protocol to
                         aim the server's replies at a forged address.
  --no-relay             do not relay v2 players whose direct punch failed (by
                         default the server forwards their game traffic)
  -h, --help             show this help and exit

Logs are JSON lines on stdout. SIGINT/SIGTERM: members of open sessions are told
close:Server shutting down, then the server exits with code 0.
`;

interface ServerCliOptions {
  readonly port: number;
  readonly autostart: boolean;
  readonly host: string | undefined;
  readonly sessionTtlMs: number;
  readonly maxSessions: number;
  readonly maxPlayersCap: number;
  readonly legacy: boolean;
  readonly relay: boolean;
  readonly logLevel: Level | 'silent';
}

type ParsedArgs =
  | { readonly kind: 'run'; readonly options: ServerCliOptions }
  | { readonly kind: 'help' }
  | { readonly kind: 'error'; readonly message: string };

const INTEGER = /^[0-9]+$/;
const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

function parseServerArgs(argv: readonly string[]): ParsedArgs {
  let parsed: ReturnType<typeof parseArgsStrict>;
  try {
    parsed = parseArgsStrict(argv);
  } catch (error) {
    return { kind: 'error', message: (error as Error).message };
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { kind: 'help' };
  if (positionals.length > 2) {
    return { kind: 'error', message: `too many arguments: ${positionals.slice(2).join(' ')}` };
  }
  const [portText, autostartText] = positionals;
  let port = DEFAULT_PORT;
  if (portText !== undefined) {
    if (!INTEGER.test(portText) || Number(portText) > 65535) {
      return { kind: 'error', message: `PORT must be an integer 0-65535, got "${portText}"` };
    }
    port = Number(portText);
  }
  let autostart = true;
  if (autostartText !== undefined) {
    const answer = autostartText.toLowerCase();
    if (answer !== 'y' && answer !== 'n') {
      return { kind: 'error', message: `AUTOSTART must be y or n, got "${autostartText}"` };
    }
    autostart = answer === 'y';
  }
  let sessionTtlMs = SESSION_TTL_MS;
  if (values['session-ttl'] !== undefined) {
    const text = values['session-ttl'];
    if (!DECIMAL.test(text) || Number(text) <= 0) {
      return { kind: 'error', message: `--session-ttl must be a positive number of seconds` };
    }
    sessionTtlMs = Number(text) * 1000;
  }
  let maxSessions = DEFAULT_MAX_SESSIONS;
  if (values['max-sessions'] !== undefined) {
    const text = values['max-sessions'];
    if (!INTEGER.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
      return { kind: 'error', message: `--max-sessions must be a positive integer` };
    }
    maxSessions = Number(text);
  }
  let maxPlayersCap = DEFAULT_MAX_PLAYERS_CAP;
  if (values['max-players'] !== undefined) {
    const text = values['max-players'];
    if (!INTEGER.test(text) || Number(text) < 1 || Number(text) > MAX_PLAYERS_CAP_LIMIT) {
      return {
        kind: 'error',
        message: `--max-players must be an integer 1-${MAX_PLAYERS_CAP_LIMIT}`,
      };
    }
    maxPlayersCap = Number(text);
  }
  const logLevel = values['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    return { kind: 'error', message: `--log-level must be one of ${LOG_LEVELS.join(', ')}` };
  }
  if (values.host === '') return { kind: 'error', message: '--host must not be empty' };
  return {
    kind: 'run',
    options: {
      port,
      autostart,
      host: values.host,
      sessionTtlMs,
      maxSessions,
      maxPlayersCap,
      legacy: values['no-legacy'] !== true,
      relay: values['no-relay'] !== true,
      logLevel: logLevel as Level | 'silent',
    },
  };
}

function parseArgsStrict(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: {
      host: { type: 'string' },
      'session-ttl': { type: 'string' },
      'max-sessions': { type: 'string' },
      'max-players': { type: 'string' },
      'log-level': { type: 'string' },
      'no-legacy': { type: 'boolean' },
      'no-relay': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function main(): Promise<void> {
  const parsed = parseServerArgs(process.argv.slice(2));
  if (parsed.kind === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`holepunch-server: ${parsed.message}\n\n${USAGE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const options = parsed.options;
  // Synchronous writes: the few lines we log (startup, lifecycle) must survive process.exit.
  const logger = pino(
    { level: options.logLevel, base: { pid: process.pid } },
    pino.destination({ fd: 1, sync: true }),
  );
  let server: RunningServer;
  try {
    server = await startServer({
      port: options.port,
      autostart: options.autostart,
      host: options.host,
      sessionTtlMs: options.sessionTtlMs,
      maxSessions: options.maxSessions,
      maxPlayersCap: options.maxPlayersCap,
      legacy: options.legacy,
      relay: options.relay,
      logger,
    });
  } catch (error) {
    logger.fatal({ err: error }, 'cannot start');
    process.stderr.write(`holepunch-server: cannot start: ${(error as Error).message}\n`);
    process.exitCode = EXIT_STARTUP_FAILED;
    return;
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second signal: the operator wants out now.
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

await main();
