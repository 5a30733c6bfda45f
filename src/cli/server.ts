#!/usr/bin/env node
// `holepunch-server [PORT [AUTOSTART]] [options]`: the original's `./server.py PORT AUTOSTART`
// plus flags. Logs are JSON lines (pino) on stdout; the first is `"msg":"listening"`.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { type Level, pino } from 'pino';
import { LEGACY_MAX_PLAYERS } from '../protocol/index.js';
import {
  DEFAULT_MEMORY_BUDGET_SHARE,
  DEFAULT_METRICS_HOST,
  DEFAULT_PORT,
  DEFAULT_SERVER_SETTINGS,
  MIN_RELAY_PORT,
  RELAY_BYTES_PER_SECOND,
  RELAY_PACKETS_PER_SECOND,
  RELAY_SOURCE_SHARE,
  type RelayLimits,
  type RunningServer,
  relayPortRangeProblem,
  type ServerSettings,
  startServer,
  UNLIMITED_SOURCES,
} from '../server/index.js';

const DEFAULTS = DEFAULT_SERVER_SETTINGS;

/** Exit code for invalid arguments (as most Unix tools). */
const EXIT_USAGE = 2;
const EXIT_STARTUP_FAILED = 1;

/** Default `--drain-seconds`: how long started games keep their relay after SIGTERM. */
const DEFAULT_DRAIN_SECONDS = 30;

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
                         get close:Session closed. (default ${DEFAULTS.sessionTtlMs / 1000})
  --max-sessions N       refuse rs: beyond N open sessions (default ${DEFAULTS.maxSessions})
  --max-players N        largest MAX a session may ask for, 1-${MAX_PLAYERS_CAP_LIMIT}
                         (default ${DEFAULTS.maxPlayersCap}; legacy rs: at most ${LEGACY_MAX_PLAYERS})
  --memory-budget MB     session state both protocols may hold; past it new
                         sessions and players are refused (v2 server_full, legacy
                         close:'Server full'). Default ${DEFAULT_MEMORY_BUDGET_SHARE * 100} % of the heap limit
                         (node --max-old-space-size)
  --no-source-limits     no quotas per source address (requests, errors, sessions,
                         players; docs/security.md): only for benchmarks and tests
                         that run every player from one address
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (default info)
  --no-legacy            serve only the v2 protocol: legacy (text) datagrams are
                         dropped and counted. Old Godot games then cannot connect,
                         and nobody can use their unauthenticated protocol to
                         aim the server's replies at a forged address.
  --no-relay             do not relay v2 players whose direct punch failed (by
                         default the server forwards their game traffic)
  --relay-ports LOW-HIGH UDP ports (1024 and up) the relay binds on the server's
                         address, one per relayed pair; open them in the firewall (default
                         ${DEFAULTS.relayPorts.low}-${DEFAULTS.relayPorts.high})
  --relay-pair-packets N datagrams/s one relayed pair may send, both ways together,
                         after a 1 s burst; the rest are dropped (default ${RELAY_PACKETS_PER_SECOND})
  --relay-pair-bytes N   bytes/s one relayed pair may send, both ways together
                         (default ${RELAY_BYTES_PER_SECOND})
  --relay-total-packets N datagrams/s the whole relay forwards (default: no cap)
  --relay-total-bytes N  bytes/s the whole relay forwards (default: no cap)
  --relay-session-max N  relay allocations one session may hold (default: one per
                         pair of a full lobby of its size, MAX*(MAX-1)/2)
  --relay-source-share F part of the relay ports (0-1) one source, an IPv4 address
                         or an IPv6 /64, may take part in (default ${RELAY_SOURCE_SHARE})
  --drain-seconds N      on SIGTERM/SIGHUP refuse new sessions but keep started
                         games and their relay running until idle, at most N
                         seconds (default ${DEFAULT_DRAIN_SECONDS}; 0 = stop at once)
  --metrics-port PORT    serve Prometheus metrics on http://HOST:PORT/metrics and a
                         health check on /healthz (default: no HTTP listener)
  --metrics-host ADDRESS bind address of the metrics listener (default ${DEFAULT_METRICS_HOST})
  --alt-address ADDRESS  a second IP address of this machine from which NAT probes
                         are answered (holepunch-client doctor); needs --host
  --alt-port PORT        the second UDP port from which NAT probes are answered, so
                         clients can tell a symmetric NAT and punch it; open it in
                         the firewall too (default: PORT+1; a free port when PORT is
                         0; if PORT+1 is taken the server starts without it and logs
                         "alternate port unavailable"; a PORT given here must be free)
  --no-alt-port          no alternate port: NAT probes only on PORT (clients then
                         cannot tell a symmetric NAT and rely on the relay)
  -h, --help             show this help and exit

Environment: every option and argument can also be given as HOLEPUNCH_ and its
name in capitals, dashes as underscores: HOLEPUNCH_PORT, HOLEPUNCH_AUTOSTART,
HOLEPUNCH_HOST, HOLEPUNCH_SESSION_TTL, HOLEPUNCH_MAX_SESSIONS,
HOLEPUNCH_MAX_PLAYERS, HOLEPUNCH_LOG_LEVEL, HOLEPUNCH_NO_LEGACY,
HOLEPUNCH_NO_RELAY, HOLEPUNCH_NO_ALT_PORT (1/true/yes or 0/false/no), HOLEPUNCH_RELAY_PORTS,
HOLEPUNCH_RELAY_PAIR_PACKETS, HOLEPUNCH_RELAY_PAIR_BYTES,
HOLEPUNCH_RELAY_TOTAL_PACKETS, HOLEPUNCH_RELAY_TOTAL_BYTES,
HOLEPUNCH_RELAY_SESSION_MAX, HOLEPUNCH_RELAY_SOURCE_SHARE,
HOLEPUNCH_DRAIN_SECONDS, HOLEPUNCH_METRICS_PORT, HOLEPUNCH_METRICS_HOST,
HOLEPUNCH_ALT_ADDRESS, HOLEPUNCH_ALT_PORT, HOLEPUNCH_NO_ALT_PORT. The command line wins; an empty variable is unset.

Logs are JSON lines on stdout. SIGINT/SIGTERM/SIGHUP: members of waiting lobbies
are told close:Server shutting down and new sessions are refused; started games
keep relaying until idle or --drain-seconds pass, then the server exits with
code 0. A second signal exits at once (code 1).
`;

interface ServerCliOptions {
  readonly port: number;
  /** `--alt-port`, 0 for `--no-alt-port`, undefined for the shell's default (PORT+1). */
  readonly altPort: number | undefined;
  readonly host: string | undefined;
  /** Only what the command line or the environment set: startServer defaults the rest. */
  readonly settings: Partial<ServerSettings>;
  readonly drainMs: number;
  readonly logLevel: Level | 'silent';
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
}

type ParsedArgs =
  | { readonly kind: 'run'; readonly options: ServerCliOptions }
  | { readonly kind: 'help' }
  | { readonly kind: 'error'; readonly message: string };

const INTEGER = /^[0-9]+$/;
const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

/** `--session-ttl` → `HOLEPUNCH_SESSION_TTL`; `PORT` → `HOLEPUNCH_PORT`. */
function envNameOf(name: string): string {
  return `HOLEPUNCH_${name.toUpperCase().replaceAll('-', '_')}`;
}

const ENV_TRUE = ['1', 'true', 'yes', 'y', 'on'];
const ENV_FALSE = ['0', 'false', 'no', 'n', 'off'];

type StringFlag =
  | 'host'
  | 'session-ttl'
  | 'max-sessions'
  | 'memory-budget'
  | 'max-players'
  | 'log-level'
  | 'metrics-port'
  | 'metrics-host'
  | 'alt-address'
  | 'alt-port'
  | 'relay-ports'
  | 'relay-pair-packets'
  | 'relay-pair-bytes'
  | 'relay-total-packets'
  | 'relay-total-bytes'
  | 'relay-session-max'
  | 'relay-source-share'
  | 'drain-seconds';

/** The relay's rate and count flags, each a positive integer, and the limit each sets. */
const RELAY_COUNT_FLAGS = [
  ['relay-pair-packets', 'packetsPerSecond'],
  ['relay-pair-bytes', 'bytesPerSecond'],
  ['relay-total-packets', 'totalPacketsPerSecond'],
  ['relay-total-bytes', 'totalBytesPerSecond'],
  ['relay-session-max', 'maxPerSession'],
] as const satisfies readonly (readonly [StringFlag, keyof RelayLimits])[];

function parseServerArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): ParsedArgs {
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
  // A value from the command line, else from the environment (an empty variable is unset);
  // `label` names where it came from, for the error message.
  const fromEnv = (name: string, label: string, given: string | undefined) => {
    if (given !== undefined) return { text: given, label };
    const text = env[envNameOf(name)];
    return text === undefined || text === ''
      ? { text: undefined, label }
      : { text, label: envNameOf(name) };
  };
  const setting = (flag: StringFlag) => fromEnv(flag, `--${flag}`, values[flag]);
  const flagOn = (
    flag: 'no-legacy' | 'no-relay' | 'no-source-limits' | 'no-alt-port',
  ): boolean | string => {
    if (values[flag] === true) return true;
    const text = env[envNameOf(flag)]?.toLowerCase();
    if (text === undefined || text === '' || ENV_FALSE.includes(text)) return false;
    if (ENV_TRUE.includes(text)) return true;
    return `${envNameOf(flag)} must be 1, true, yes, 0, false or no, got "${env[envNameOf(flag)]}"`;
  };
  const portSetting = fromEnv('port', 'PORT', positionals[0]);
  let port = DEFAULT_PORT;
  if (portSetting.text !== undefined) {
    const text = portSetting.text;
    if (!INTEGER.test(text) || Number(text) > 65535) {
      return {
        kind: 'error',
        message: `${portSetting.label} must be an integer 0-65535, got "${text}"`,
      };
    }
    port = Number(text);
  }
  // Mutable here, read-only once returned.
  const settings: { -readonly [K in keyof ServerSettings]?: ServerSettings[K] } = {};
  const autostartSetting = fromEnv('autostart', 'AUTOSTART', positionals[1]);
  if (autostartSetting.text !== undefined) {
    const answer = autostartSetting.text.toLowerCase();
    if (answer !== 'y' && answer !== 'n') {
      return {
        kind: 'error',
        message: `${autostartSetting.label} must be y or n, got "${autostartSetting.text}"`,
      };
    }
    settings.autostart = answer === 'y';
  }
  const ttl = setting('session-ttl');
  if (ttl.text !== undefined) {
    if (!DECIMAL.test(ttl.text) || Number(ttl.text) <= 0) {
      return { kind: 'error', message: `${ttl.label} must be a positive number of seconds` };
    }
    settings.sessionTtlMs = Number(ttl.text) * 1000;
  }
  const sessions = setting('max-sessions');
  if (sessions.text !== undefined) {
    const text = sessions.text;
    if (!INTEGER.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
      return { kind: 'error', message: `${sessions.label} must be a positive integer` };
    }
    settings.maxSessions = Number(text);
  }
  const budget = setting('memory-budget');
  if (budget.text !== undefined) {
    if (!DECIMAL.test(budget.text) || Number(budget.text) <= 0) {
      return { kind: 'error', message: `${budget.label} must be a positive number of MB` };
    }
    settings.memoryBudgetBytes = Math.floor(Number(budget.text) * 1024 * 1024);
  }
  const players = setting('max-players');
  if (players.text !== undefined) {
    const text = players.text;
    if (!INTEGER.test(text) || Number(text) < 1 || Number(text) > MAX_PLAYERS_CAP_LIMIT) {
      return {
        kind: 'error',
        message: `${players.label} must be an integer 1-${MAX_PLAYERS_CAP_LIMIT}`,
      };
    }
    settings.maxPlayersCap = Number(text);
  }
  const level = setting('log-level');
  const logLevel = level.text ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    return { kind: 'error', message: `${level.label} must be one of ${LOG_LEVELS.join(', ')}` };
  }
  const host = setting('host');
  if (host.text === '') return { kind: 'error', message: '--host must not be empty' };
  let metricsPort: number | undefined;
  const metrics = setting('metrics-port');
  if (metrics.text !== undefined) {
    if (!INTEGER.test(metrics.text) || Number(metrics.text) > 65535) {
      return { kind: 'error', message: `${metrics.label} must be an integer 0-65535` };
    }
    metricsPort = Number(metrics.text);
  }
  const metricsHost = setting('metrics-host');
  if (metricsHost.text === '') {
    return { kind: 'error', message: '--metrics-host must not be empty' };
  }
  const altAddress = setting('alt-address');
  if (altAddress.text !== undefined && isIP(altAddress.text) === 0) {
    return { kind: 'error', message: `${altAddress.label} must be an IP address` };
  }
  if (altAddress.text !== undefined && (host.text === undefined || isIP(host.text) === 0)) {
    return {
      kind: 'error',
      message: `${altAddress.label} needs --host with the main IP address (replies leave from the address they were sent to)`,
    };
  }
  if (altAddress.text !== undefined) settings.altAddress = altAddress.text;
  let altPort: number | undefined;
  const alt = setting('alt-port');
  if (alt.text !== undefined) {
    if (!INTEGER.test(alt.text) || Number(alt.text) < 1 || Number(alt.text) > 65535) {
      return { kind: 'error', message: `${alt.label} must be an integer 1-65535` };
    }
    if (Number(alt.text) === port) {
      return { kind: 'error', message: `${alt.label} must differ from PORT (${port})` };
    }
    altPort = Number(alt.text);
  }
  const noAltPort = flagOn('no-alt-port');
  if (typeof noAltPort === 'string') return { kind: 'error', message: noAltPort };
  if (noAltPort) {
    if (altPort !== undefined) {
      return { kind: 'error', message: `${alt.label} and --no-alt-port exclude each other` };
    }
    altPort = 0;
  }
  const ports = setting('relay-ports');
  if (ports.text !== undefined) {
    const match = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(ports.text);
    const relayPorts = { low: Number(match?.[1]), high: Number(match?.[2]) };
    if (match === null || relayPortRangeProblem(relayPorts) !== undefined) {
      return {
        kind: 'error',
        message: `${ports.label} must be LOW-HIGH, ports ${MIN_RELAY_PORT}-65535 with LOW <= HIGH, got "${ports.text}"`,
      };
    }
    settings.relayPorts = relayPorts;
  }
  const relayLimits: { -readonly [K in keyof RelayLimits]?: RelayLimits[K] } = {};
  for (const [flag, limit] of RELAY_COUNT_FLAGS) {
    const given = setting(flag);
    if (given.text === undefined) continue;
    const n = Number(given.text);
    if (!INTEGER.test(given.text) || n < 1 || !Number.isSafeInteger(n)) {
      return { kind: 'error', message: `${given.label} must be a positive integer` };
    }
    relayLimits[limit] = n;
  }
  const share = setting('relay-source-share');
  if (share.text !== undefined) {
    const n = Number(share.text);
    if (!DECIMAL.test(share.text) || !(n > 0 && n <= 1)) {
      return {
        kind: 'error',
        message: `${share.label} must be a number above 0 and at most 1, got "${share.text}"`,
      };
    }
    relayLimits.sourceShare = n;
  }
  if (Object.keys(relayLimits).length > 0) settings.relayLimits = relayLimits;
  let drainMs = DEFAULT_DRAIN_SECONDS * 1000;
  const drain = setting('drain-seconds');
  if (drain.text !== undefined) {
    if (!DECIMAL.test(drain.text)) {
      return { kind: 'error', message: `${drain.label} must be a number of seconds, 0 or more` };
    }
    drainMs = Number(drain.text) * 1000;
  }
  const noLegacy = flagOn('no-legacy');
  if (typeof noLegacy === 'string') return { kind: 'error', message: noLegacy };
  if (noLegacy) settings.legacy = false;
  const noRelay = flagOn('no-relay');
  if (typeof noRelay === 'string') return { kind: 'error', message: noRelay };
  if (noRelay) settings.relay = false;
  const noSourceLimits = flagOn('no-source-limits');
  if (typeof noSourceLimits === 'string') return { kind: 'error', message: noSourceLimits };
  if (noSourceLimits) settings.sourceLimits = UNLIMITED_SOURCES;
  return {
    kind: 'run',
    options: {
      port,
      altPort,
      host: host.text,
      settings,
      drainMs,
      logLevel: logLevel as Level | 'silent',
      metricsPort,
      metricsHost: metricsHost.text ?? DEFAULT_METRICS_HOST,
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
      'memory-budget': { type: 'string' },
      'no-source-limits': { type: 'boolean' },
      'max-players': { type: 'string' },
      'log-level': { type: 'string' },
      'no-legacy': { type: 'boolean' },
      'no-relay': { type: 'boolean' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'alt-address': { type: 'string' },
      'alt-port': { type: 'string' },
      'no-alt-port': { type: 'boolean' },
      'relay-ports': { type: 'string' },
      'relay-pair-packets': { type: 'string' },
      'relay-pair-bytes': { type: 'string' },
      'relay-total-packets': { type: 'string' },
      'relay-total-bytes': { type: 'string' },
      'relay-session-max': { type: 'string' },
      'relay-source-share': { type: 'string' },
      'drain-seconds': { type: 'string' },
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
  // Signals are handled from the first moment: the "listening" line is written inside
  // startServer, and a supervisor (or a test) that signals right after reading it must get a
  // drain, not the default action's silent death.
  let server: RunningServer | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  const drain = (running: RunningServer, signal: NodeJS.Signals): void => {
    logger.info({ signal, drainSeconds: options.drainMs / 1000 }, 'shutting down');
    // Started games keep their relay for up to --drain-seconds (0: close at once).
    running.drain(options.drainMs).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const stop = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined) {
      // A second signal: the operator wants out now.
      process.exit(1);
    }
    stopSignal = signal;
    if (server !== undefined) drain(server, signal);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // A closed terminal: drain as for SIGTERM (members are told), rather than die silently.
  process.on('SIGHUP', stop);
  try {
    server = await startServer({
      ...options.settings,
      port: options.port,
      host: options.host,
      ...(options.altPort === undefined ? {} : { altPort: options.altPort }),
      logger,
      ...(options.metricsPort === undefined
        ? {}
        : { metricsPort: options.metricsPort, metricsHost: options.metricsHost }),
    });
  } catch (error) {
    logger.fatal({ err: error }, 'cannot start');
    process.stderr.write(`holepunch-server: cannot start: ${(error as Error).message}\n`);
    process.exitCode = EXIT_STARTUP_FAILED;
    return;
  }
  if (stopSignal !== undefined) drain(server, stopSignal);
}

await main();
