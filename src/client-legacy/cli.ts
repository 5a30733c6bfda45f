#!/usr/bin/env node
/**
 * A client of the original HolePunch plugin's protocol, with the original's timings, for
 * the NAT lab and benchmarks:
 *   node dist/src/client-legacy/cli.js host|join SESSION --server HOST:PORT [--json]
 *     [--name NAME] [--nickname NICK] [--max-players N] [--timeout MS] [--local-port N]
 *     [--revision godot3-lobby|godot3-master|godot4-master]
 * --revision picks which released plugin to behave like (default godot3-lobby): its `rc`
 * fields, whether it reads lobby:/close:, how it parses peers: (godot4-master never can).
 * Prints one JSON line per event (registered, lobby, punched, rtt, failed) with --json,
 * readable lines otherwise. Exit 0 when punched and game datagrams came back, 1 otherwise.
 */
import { parseArgs } from 'node:util';
import { formatCliLine, type LegacyClientLine } from '../cli/index.js';
import { HolePunchError } from '../errors.js';
import { exchangeGameDatagrams } from './game-check.js';
import { LegacyClient } from './shell.js';
import {
  DEFAULT_LEGACY_REVISION,
  LEGACY_REVISIONS,
  type LegacyClientEvent,
  type LegacyRevision,
} from './state.js';

const isRevision = (value: string): value is LegacyRevision =>
  (LEGACY_REVISIONS as readonly string[]).includes(value);

/** Whole run (registration, lobby, punch) gives up after this unless --timeout says otherwise. */
const DEFAULT_TIMEOUT_MS = 30_000;
const USAGE = [
  'usage: legacy-client host|join SESSION --server HOST:PORT [--name NAME] [--nickname NICK] [--max-players N] [--timeout MS] [--local-port N] [--revision REV] [--json]',
  `  --revision REV  the original plugin to behave like: ${LEGACY_REVISIONS.join(', ')} (default ${DEFAULT_LEGACY_REVISION})`,
  '                  godot3-lobby sends rc:NAME:KEY:NICKNAME and reads lobby:/close:; the master',
  '                  revisions send rc:NAME:KEY and ignore them; godot4-master cannot parse peers:',
].join('\n');

function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      server: { type: 'string' },
      name: { type: 'string' },
      nickname: { type: 'string' },
      'max-players': { type: 'string', default: '2' },
      timeout: { type: 'string', default: String(DEFAULT_TIMEOUT_MS) },
      'local-port': { type: 'string' },
      revision: { type: 'string', default: DEFAULT_LEGACY_REVISION },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return Promise.resolve(0);
  }
  const revision = values.revision;
  const [role, session] = positionals;
  const at = values.server?.lastIndexOf(':') ?? -1;
  if (
    (role !== 'host' && role !== 'join') ||
    session === undefined ||
    values.server === undefined ||
    at < 0 ||
    !isRevision(revision)
  ) {
    process.stderr.write(`${USAGE}\n`);
    return Promise.resolve(2);
  }
  const server = { address: values.server.slice(0, at), port: Number(values.server.slice(at + 1)) };
  const name = values.name ?? `${role}-${process.pid}`;
  const print = (line: LegacyClientLine) => {
    process.stdout.write(
      values.json
        ? formatCliLine('legacy-client', line)
        : `${Object.values(line).map(String).join(' ')}\n`,
    );
  };
  const client = new LegacyClient({
    role,
    session,
    name,
    nickname: values.nickname ?? name,
    maxPlayers: Number(values['max-players']),
    server,
    revision,
    localPort: values['local-port'] === undefined ? server.port : Number(values['local-port']),
  });
  client.on('event', (event: LegacyClientEvent) => {
    // `peers` is internal progress; the v2 CLI has no such line.
    if (event.event !== 'peers') print(event);
  });
  const timeoutMs = Number(values.timeout);
  return new Promise<number>((resolve) => {
    const timer = setTimeout(() => {
      print({
        event: 'failed',
        code: 'timeout',
        message: `nothing punched within ${timeoutMs} ms`,
      });
      client.close();
      resolve(1);
    }, timeoutMs);
    const stop = () => {
      clearTimeout(timer);
      client.close();
      resolve(130);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    client
      .start()
      .then(() => client.punched())
      .then(async ({ event, socket }) => {
        clearTimeout(timer);
        const results = await exchangeGameDatagrams(socket, event.peers);
        for (const r of results) print({ event: 'rtt', ...r });
        socket.close();
        resolve(results.every((r) => r.received > 0) ? 0 : 1);
      })
      .catch((error: unknown) => {
        clearTimeout(timer);
        // `failed` was already printed for protocol failures; report only what the state
        // machine could not (a socket that cannot bind, for one).
        if (!(error instanceof HolePunchError) || error.code === 'aborted') {
          print({ event: 'failed', code: 'bad_request', message: String(error) });
        }
        resolve(1);
      });
  });
}

process.exitCode = await main();
