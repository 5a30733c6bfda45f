import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { parseCliLine, SERVER_CLI_PATH, type ServerLine } from '../src/cli/index.js';
import { HolePunchClient, type HolePunchResult } from '../src/client/index.js';
import { HolePunchError } from '../src/errors.js';
import { decodeV2, encodeV2 } from '../src/protocol/index.js';

const CLI = SERVER_CLI_PATH;
const STARTUP_TIMEOUT_MS = 5_000;
const EXIT_TIMEOUT_MS = 5_000;

interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

/** The environment without the caller's HOLEPUNCH_ settings, plus `env`. */
function cliEnv(env: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const clean = Object.entries(process.env).filter(([name]) => !name.startsWith('HOLEPUNCH_'));
  return { ...Object.fromEntries(clean), ...env };
}

function startCli(args: readonly string[], env: Readonly<Record<string, string>> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv(env),
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const finished = (async (): Promise<Finished> => {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    children.delete(child);
    return { code, signal, stdout, stderr };
  })();
  return {
    child,
    finished,
    /** Resolves with the first stdout JSON line whose msg is `msg` (and that `where` accepts). */
    async logLine(
      msg: string,
      where: (line: ServerLine) => boolean = () => true,
    ): Promise<ServerLine> {
      const deadline = Date.now() + STARTUP_TIMEOUT_MS;
      while (Date.now() < deadline && child.exitCode === null) {
        // Only complete lines: a record may still be arriving.
        for (const line of stdout.split('\n').slice(0, -1)) {
          if (!line.startsWith('{')) continue;
          const record = parseCliLine('server', line);
          if (!record.ok) assert.fail(`${record.error}: ${line}`);
          if (record.line.msg === msg && where(record.line)) return record.line;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no "${msg}" log line; stdout: ${stdout} stderr: ${stderr}`);
    },
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('holepunch-server CLI', () => {
  test('invalid arguments print a usage error on stderr and exit with code 2', async () => {
    const cases = [
      ['70000'],
      ['4000', 'maybe'],
      ['4000', 'y', 'extra'],
      ['--bogus'],
      ['--session-ttl', '0'],
      ['--session-ttl', 'ten'],
      ['--max-sessions', '-5'],
      ['--max-players', '0'],
      ['--log-level', 'loud'],
      ['--host'],
      ['--no-legacy=yes'],
      ['--metrics-port', '65536'],
      ['--metrics-port', 'http'],
      ['--metrics-host', ''],
      ['--relay-ports', '40000'],
      ['--relay-ports', '41000-40000'],
      ['--relay-ports', '0-10'],
      // Below 1024: a relay port is its socket's id, and 0-3 are the main and probe sockets.
      ['--relay-ports', '1-3'],
      ['--relay-ports', '1023-2000'],
      ['--relay-ports', '40000-70000'],
      ['--relay-ports', ' 1-2'],
      ['--drain-seconds', '-1'],
      ['--drain-seconds', 'soon'],
      ['4000', '--alt-port', '4000'],
      ['--alt-port', '4001', '--no-alt-port'],
      ['--no-alt-port=yes'],
      ['--relay-pair-packets', '0'],
      ['--relay-pair-bytes', '1.5'],
      ['--relay-total-packets', 'lots'],
      ['--relay-total-bytes', '-1'],
      ['--relay-session-max', '0'],
      ['--relay-source-share', '0'],
      ['--relay-source-share', '1.5'],
      ['--relay-source-share', 'half'],
    ];
    const results = await Promise.all(cases.map((args) => startCli(args).finished));
    results.forEach((result, i) => {
      const args = (cases[i] as string[]).join(' ');
      assert.equal(result.code, 2, `exit code for "${args}"`);
      assert.match(result.stderr, /^holepunch-server: [\s\S]+?\n\nUsage: holepunch-server /, args);
      assert.equal(result.stdout, '', args);
    });
  });

  test('--help explains every argument and flag and exits 0', async () => {
    const result = await startCli(['--help']).finished;
    assert.equal(result.code, 0);
    for (const word of [
      'PORT',
      'AUTOSTART',
      '--host',
      '--session-ttl',
      '--max-sessions',
      '--max-players',
      '--log-level',
      '--no-legacy',
      '--no-relay',
      '--metrics-port',
      '--metrics-host',
      '--relay-ports',
      'HOLEPUNCH_RELAY_PORTS',
      '--drain-seconds',
      'HOLEPUNCH_DRAIN_SECONDS',
      '--relay-pair-packets',
      '--relay-pair-bytes',
      '--relay-total-packets',
      '--relay-total-bytes',
      '--relay-session-max',
      '--relay-source-share',
      'HOLEPUNCH_RELAY_PAIR_PACKETS',
      'HOLEPUNCH_RELAY_SOURCE_SHARE',
      'HOLEPUNCH_PORT',
      'HOLEPUNCH_METRICS_PORT',
      '--alt-port',
      '--no-alt-port',
      'HOLEPUNCH_NO_ALT_PORT',
      'SIGHUP',
      '--help',
    ]) {
      assert.ok(result.stdout.includes(word), `help mentions ${word}`);
    }
  });

  test('PORT 0 binds a free port, announced in a JSON "listening" line; SIGTERM tells members close:Server shutting down and exits 0', async () => {
    const cli = startCli(['0', 'n', '--host', '127.0.0.1', '--session-ttl', '30']);
    const listening = await cli.logLine('listening');
    assert.equal(listening.address, '127.0.0.1');
    assert.equal(listening.autostart, false);
    assert.equal(listening.sessionTtlS, 30);
    assert.equal(listening.legacy, true, 'legacy is served unless --no-legacy');
    const port = listening.port as number;
    assert.ok(Number.isInteger(port) && port > 0);

    const client = dgram.createSocket('udp4');
    try {
      const received: string[] = [];
      client.on('message', (data) => received.push(data.toString()));
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
      const own = client.address().port;
      client.send('rs:cli:2', port, '127.0.0.1');
      client.send('rc:h:cli:Host', port, '127.0.0.1');
      const waitFor = async (count: number): Promise<void> => {
        const deadline = Date.now() + STARTUP_TIMEOUT_MS;
        while (received.length < count && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      await waitFor(3);
      assert.deepEqual(received, [`ok:${own}`, `ok:${own}`, 'lobby:Host:2']);
      const created = await cli.logLine('session created');
      assert.equal(created.key, 'cli');

      cli.child.kill('SIGTERM');
      const result = await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit after SIGTERM');
      await waitFor(4);
      assert.equal(received[3], 'close:Server shutting down');
      assert.equal(result.code, 0);
      assert.equal(result.signal, null);
      assert.match(result.stdout, /"msg":"closed"/);
    } finally {
      client.close();
    }
  });

  test('with only PORT, autostart is on and every interface is bound; SIGINT exits 0', async () => {
    const cli = startCli(['0']);
    const listening = await cli.logLine('listening');
    assert.equal(listening.autostart, true);
    assert.ok(
      listening.address === '::' || listening.address === '0.0.0.0',
      String(listening.address),
    );
    cli.child.kill('SIGINT');
    const result = await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit after SIGINT');
    assert.equal(result.code, 0);
    assert.doesNotMatch(result.stdout, /metrics listening/, 'no HTTP listener unless asked for');
  });

  test('an invalid environment variable is a usage error naming the variable (exit 2)', async () => {
    const cases: Record<string, string>[] = [
      { HOLEPUNCH_PORT: '70000' },
      { HOLEPUNCH_AUTOSTART: 'maybe' },
      { HOLEPUNCH_SESSION_TTL: 'ten' },
      { HOLEPUNCH_MAX_SESSIONS: '0' },
      { HOLEPUNCH_MAX_PLAYERS: '999' },
      { HOLEPUNCH_LOG_LEVEL: 'loud' },
      { HOLEPUNCH_NO_LEGACY: 'maybe' },
      { HOLEPUNCH_NO_RELAY: '2' },
      { HOLEPUNCH_METRICS_PORT: 'http' },
      { HOLEPUNCH_RELAY_PORTS: '5-4' },
      { HOLEPUNCH_DRAIN_SECONDS: 'soon' },
      { HOLEPUNCH_NO_ALT_PORT: 'maybe' },
      { HOLEPUNCH_ALT_PORT: '0' },
    ];
    // Bounded: a variable the CLI did not know would start a server on 4000 that never exits.
    const results = await withTimeout(
      Promise.all(cases.map((env) => startCli([], env).finished)),
      EXIT_TIMEOUT_MS,
      'usage errors',
    );
    results.forEach((result, i) => {
      const [name] = Object.keys(cases[i] as Record<string, string>) as [string];
      assert.equal(result.code, 2, `exit code for ${name}`);
      assert.match(result.stderr, new RegExp(`^holepunch-server: ${name} must `), name);
      assert.equal(result.stdout, '', name);
    });
  });

  test('every setting can come from HOLEPUNCH_ variables, and a flag wins over its variable', async () => {
    const cli = startCli(['--session-ttl', '45', '--max-players', '9'], {
      HOLEPUNCH_PORT: '0',
      HOLEPUNCH_AUTOSTART: 'n',
      HOLEPUNCH_HOST: '127.0.0.1',
      HOLEPUNCH_SESSION_TTL: '30',
      HOLEPUNCH_MAX_SESSIONS: '7',
      HOLEPUNCH_MAX_PLAYERS: '8',
      HOLEPUNCH_LOG_LEVEL: 'debug',
      HOLEPUNCH_NO_LEGACY: 'true',
      HOLEPUNCH_NO_RELAY: '1',
      HOLEPUNCH_METRICS_PORT: '0',
      HOLEPUNCH_METRICS_HOST: '127.0.0.1',
    });
    const listening = await cli.logLine('listening');
    assert.equal(listening.address, '127.0.0.1');
    assert.notEqual(listening.port, 4000);
    assert.equal(listening.autostart, false);
    assert.equal(listening.sessionTtlS, 45, 'the flag wins');
    assert.equal(listening.maxSessions, 7);
    assert.equal(listening.maxPlayersCap, 9, 'the flag wins');
    assert.equal(listening.legacy, false);
    assert.equal(listening.relay, false);
    const metrics = await cli.logLine('metrics listening');
    assert.equal(metrics.address, '127.0.0.1');
    const health = await fetch(`http://127.0.0.1:${metrics.port}/healthz`);
    assert.equal(health.status, 200);
    await health.text();
    cli.child.kill('SIGTERM');
    const result = await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit after SIGTERM');
    assert.equal(result.code, 0);
    assert.equal(listening.logLevel, 'debug');
  });

  test('SIGHUP (a closed terminal) drains like SIGTERM: members hear close:Server shutting down, exit 0; member lines name who joined and was refused, without addresses at info', async () => {
    const cli = startCli(['0', 'n', '--host', '127.0.0.1', '--metrics-port', '0']);
    const listening = await cli.logLine('listening');
    const port = listening.port as number;
    const metrics = await cli.logLine('metrics listening');
    const client = dgram.createSocket('udp4');
    try {
      const received: string[] = [];
      client.on('message', (data) => received.push(data.toString()));
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
      const waitFor = async (count: number): Promise<void> => {
        const deadline = Date.now() + STARTUP_TIMEOUT_MS;
        while (received.length < count && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      client.send('rs:hup:2', port, '127.0.0.1');
      await waitFor(1);
      client.send('rc:ann:hup:Ann', port, '127.0.0.1');
      await waitFor(3);
      client.send('rc:bob:nowhere:Bob', port, '127.0.0.1');
      await waitFor(4);
      const joined = await cli.logLine('member joined');
      assert.equal(joined.name, 'ann');
      assert.equal(joined.key, 'hup');
      assert.equal(joined.address, undefined, 'no address at info');
      // The joiner of 'log' may itself have been refused first (its join overtook the host's
      // host, session_not_found, then retried): the line wanted is the one for 'nowhere'.
      const refused = await cli.logLine('member refused', (line) => line.key === 'nowhere');
      assert.equal(refused.name, 'bob');
      assert.equal(refused.reason, 'session_not_found');
      const text = await (await fetch(`http://127.0.0.1:${metrics.port}/metrics`)).text();
      assert.match(text, /^holepunch_members\{protocol="legacy"\} 1$/m);
      assert.match(text, /^holepunch_sessions_open\{protocol="legacy"\} 1$/m);

      cli.child.kill('SIGHUP');
      const result = await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit after SIGHUP');
      await waitFor(received.length + 1);
      assert.equal(received.at(-1), 'close:Server shutting down');
      assert.equal(result.code, 0);
      assert.equal(result.signal, null);
      assert.match(result.stdout, /"signal":"SIGHUP"/);
    } finally {
      client.close();
    }
  });

  test('v2 players reach the log at info: member joined, refused (a missing session) and left, with names and no addresses', async () => {
    const cli = startCli(['0', 'y', '--host', LOOPBACK]);
    const port = (await cli.logLine('listening')).port as number;
    const clients = [0, 1, 2].map(
      () => new HolePunchClient({ server: { address: LOOPBACK, port }, bindAddress: LOOPBACK }),
    );
    try {
      const [host, joiner, lost] = clients as [HolePunchClient, HolePunchClient, HolePunchClient];
      await Promise.all([
        host.startTraversal({ session: 'log', isHost: true, name: 'ann', timeoutMs: 10_000 }),
        joiner.startTraversal({ session: 'log', isHost: false, name: 'bob', timeoutMs: 10_000 }),
      ]);
      const joined = await cli.logLine('member joined');
      assert.equal(joined.protocol, 'v2');
      assert.equal(joined.key, 'log');
      assert.ok(joined.name === 'ann' || joined.name === 'bob', String(joined.name));
      assert.equal(joined.address, undefined, 'no address at info');
      await assert.rejects(
        lost.startTraversal({ session: 'nowhere', isHost: false, name: 'cy', sessionWaitMs: 0 }),
        (err: unknown) => err instanceof HolePunchError && err.code === 'session_not_found',
      );
      // The joiner of 'log' may itself have been refused first (its join overtook the host's
      // host, session_not_found, then retried): the line wanted is the one for 'nowhere'.
      const refused = await cli.logLine('member refused', (line) => line.key === 'nowhere');
      assert.equal(refused.protocol, 'v2');
      assert.equal(refused.key, 'nowhere');
      assert.equal(refused.name, 'cy');
      assert.equal(refused.reason, 'session_not_found');
      // A player who leaves a waiting lobby.
      const [owner, leaver] = [0, 1].map(
        () => new HolePunchClient({ server: { address: LOOPBACK, port }, bindAddress: LOOPBACK }),
      ) as [HolePunchClient, HolePunchClient];
      clients.push(owner, leaver);
      const options = { session: 'log2', maxPlayers: 3, timeoutMs: 10_000 };
      void owner.startTraversal({ ...options, isHost: true, name: 'eve' }).catch(() => {});
      const full = new Promise<void>((resolve) =>
        owner.on('lobbyUpdate', (e) => {
          if (e.nicknames.length === 2) resolve();
        }),
      );
      void leaver.startTraversal({ ...options, isHost: false, name: 'dan' }).catch(() => {});
      await withTimeout(full, STARTUP_TIMEOUT_MS, 'dan in the lobby');
      await leaver.close();
      const left = await cli.logLine('member left');
      assert.equal(left.name, 'dan');
      assert.equal(left.key, 'log2');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
    cli.child.kill('SIGTERM');
    assert.equal((await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit')).code, 0);
  });

  test('--relay-ports LOW-HIGH (or HOLEPUNCH_RELAY_PORTS) sets the relay range, the flag winning', async () => {
    const fromEnv = startCli(['0', '--host', '127.0.0.1'], {
      HOLEPUNCH_RELAY_PORTS: '41000-41009',
    });
    assert.equal((await fromEnv.logLine('listening')).relayPorts, '41000-41009');
    fromEnv.child.kill('SIGTERM');
    const flag = startCli(['0', '--host', '127.0.0.1', '--relay-ports', '42000-42000'], {
      HOLEPUNCH_RELAY_PORTS: '41000-41009',
    });
    assert.equal((await flag.logLine('listening')).relayPorts, '42000-42000', 'the flag wins');
    flag.child.kill('SIGTERM');
    const results = await Promise.all([fromEnv.finished, flag.finished]);
    for (const r of results) assert.equal(r.code, 0);
  });

  test('the relay limits are flags (--relay-pair-packets and the like) or HOLEPUNCH_RELAY_* variables, the flag winning; the listening line shows them', async () => {
    const defaults = startCli(['0', '--host', '127.0.0.1']);
    assert.deepEqual((await defaults.logLine('listening')).relayLimits, {
      maxAllocations: 1000,
      sourceShare: 0.5,
      maxPerSession: 0,
      bytesPerSecond: 2_000_000,
      packetsPerSecond: 4000,
      idleMs: 60_000,
    });
    defaults.child.kill('SIGTERM');
    const env = {
      HOLEPUNCH_RELAY_PAIR_PACKETS: '100',
      HOLEPUNCH_RELAY_PAIR_BYTES: '50000',
      HOLEPUNCH_RELAY_TOTAL_PACKETS: '1000',
      HOLEPUNCH_RELAY_TOTAL_BYTES: '900000',
      HOLEPUNCH_RELAY_SESSION_MAX: '31',
      HOLEPUNCH_RELAY_SOURCE_SHARE: '0.05',
    };
    const cli = startCli(['0', '--host', '127.0.0.1', '--relay-pair-packets', '20000'], env);
    assert.deepEqual((await cli.logLine('listening')).relayLimits, {
      maxAllocations: 1000,
      sourceShare: 0.05,
      maxPerSession: 31,
      bytesPerSecond: 50_000,
      packetsPerSecond: 20_000,
      totalBytesPerSecond: 900_000,
      totalPacketsPerSecond: 1000,
      idleMs: 60_000,
    });
    cli.child.kill('SIGTERM');
    for (const r of await Promise.all([defaults.finished, cli.finished])) assert.equal(r.code, 0);
  });

  test('SIGTERM drains: a relayed game keeps playing, new hosts are refused (v2 server_full, legacy close:Server shutting down), the process exits 0 once the relay is idle', async () => {
    const game = await relayedGameOnCli(['--drain-seconds', '30']);
    try {
      const terminatedAt = Date.now();
      game.cli.child.kill('SIGTERM');
      await game.cli.logLine('draining');
      // New sessions are refused, in both protocols.
      const late = new HolePunchClient({ server: { address: LOOPBACK, port: game.port } });
      game.clients.push(late);
      await assert.rejects(
        late.startTraversal({ session: 'late', isHost: true, name: 'h', timeoutMs: 5_000 }),
        (e: unknown) =>
          e instanceof HolePunchError &&
          e.code === 'server_full' &&
          /shutting down/.test(e.message),
      );
      const legacy = dgram.createSocket('udp4');
      try {
        const replies: string[] = [];
        legacy.on('message', (data) => replies.push(data.toString()));
        await new Promise<void>((resolve) => legacy.bind(0, LOOPBACK, resolve));
        legacy.send('rs:late-legacy:2', game.port, LOOPBACK);
        const until = Date.now() + 2_000;
        while (!replies.some((r) => r.startsWith('close:')) && Date.now() < until) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.ok(replies.includes('close:Server shutting down'), replies.join(' | '));
      } finally {
        legacy.close();
      }
      // The game goes on through the relay for a while after the signal.
      const sent = await game.play(1_500);
      assert.ok(sent.received >= sent.sent / 2, `${sent.received} of ${sent.sent} arrived`);
      assert.equal(game.cli.child.exitCode, null, 'still running while the game plays');
      // The game ends: about DRAIN_QUIET_MS (5 s) later the server is idle and exits, long
      // before --drain-seconds.
      const stoppedAt = Date.now();
      const result = await withTimeout(game.cli.finished, 12_000, 'exit once idle');
      assert.equal(result.code, 0);
      assert.ok(Date.now() - stoppedAt >= 4_000, 'waited for the relay to go quiet');
      assert.ok(Date.now() - terminatedAt < 25_000, 'before the bound');
      assert.match(result.stdout, /"idle":true[^\n]*"msg":"drained"/);
    } finally {
      await game.close();
    }
  });

  test('--relay-pair-packets 100 caps a relayed pair: of a burst of 400 datagrams about 100 arrive, and the metrics count the drops by reason (pair_rate)', async () => {
    const game = await relayedGameOnCli(['--relay-pair-packets', '100', '--metrics-port', '0']);
    try {
      const metricsPort = (await game.cli.logLine('metrics listening')).port as number;
      const burst = await game.burst(400);
      assert.ok(burst.received > 0 && burst.received <= 110, `${burst.received} of 400 arrived`);
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const drops = Number(
        /holepunch_relay_drops_total\{reason="pair_rate"\} (\d+)/.exec(text)?.[1],
      );
      // The rest: dropped by the relay and counted, or by the kernel before the relay read them
      // (a relay port has the default receive buffer: on a loaded machine 120 of the burst were
      // lost so); the pair's own punches through the relay count in its bucket too (once 306
      // drops with 100 arrived). So: counted, and never many more than did not arrive.
      const rest = 400 - burst.received;
      assert.ok(drops > 0 && drops <= rest + 20, `pair_rate drops: ${drops}, ${rest} not arrived`);
      assert.match(text, /holepunch_relay_drops_total\{reason="server_rate"\} 0/);
    } finally {
      await game.close();
      game.cli.child.kill('SIGKILL');
    }
  });

  test('--drain-seconds bounds the drain while a game still plays, and 0 stops at once', async () => {
    const game = await relayedGameOnCli(['--drain-seconds', '1.5']);
    try {
      const terminatedAt = Date.now();
      game.cli.child.kill('SIGTERM');
      const playing = game.play(6_000);
      const result = await withTimeout(game.cli.finished, 5_000, 'exit at the bound');
      const took = Date.now() - terminatedAt;
      assert.equal(result.code, 0);
      assert.ok(took >= 1_400 && took < 4_000, `exited ${took} ms after SIGTERM`);
      assert.match(result.stdout, /"idle":false[^\n]*"msg":"drained"/);
      await playing;
    } finally {
      await game.close();
    }
    const now = startCli(['0', '--host', LOOPBACK, '--drain-seconds', '0']);
    await now.logLine('listening');
    const at = Date.now();
    now.child.kill('SIGTERM');
    const result = await withTimeout(now.finished, EXIT_TIMEOUT_MS, 'exit at once');
    assert.equal(result.code, 0);
    assert.ok(Date.now() - at < 2_000);
    assert.doesNotMatch(result.stdout, /"msg":"draining"/);
  });
});

const LOOPBACK = '127.0.0.1';
/** Relay ports of these tests: away from client-loopback's and the ephemeral range. */
const RELAY_LOW = 12_000 + (process.pid % 400) * 20;

/**
 * A CLI server with a relayed v2 pair on it (the direct path between the two is cut, as in
 * test/client-loopback.test.ts); `play(ms)` exchanges game datagrams through the relay.
 */
async function relayedGameOnCli(extra: readonly string[]) {
  const relayHigh = RELAY_LOW + 19;
  const cli = startCli([
    '0',
    '--host',
    LOOPBACK,
    '--relay-ports',
    `${RELAY_LOW}-${relayHigh}`,
    ...extra,
  ]);
  const port = (await cli.logLine('listening')).port as number;
  const isRelay = (p: number) => p >= RELAY_LOW && p <= relayHigh;
  const clients = [0, 1].map(
    () =>
      new HolePunchClient({
        server: { address: LOOPBACK, port },
        bindAddress: LOOPBACK,
        punchBudgetMs: 400,
        dropDatagram: (_direction, peer) => peer.port !== port && !isRelay(peer.port),
      }),
  );
  const results: HolePunchResult[] = await Promise.all(
    clients.map((c, i) =>
      c.startTraversal({ session: 'drain', isHost: i === 0, name: `p${i}`, timeoutMs: 10_000 }),
    ),
  );
  for (const r of results) assert.equal(r.peers[0]?.path, 'relay');
  let received = 0;
  (clients[1] as HolePunchClient).on('message', () => received++);
  return {
    cli,
    port,
    clients,
    /** Client 0 sends to client 1 through the relay every 20 ms for `ms`. */
    async play(ms: number): Promise<{ sent: number; received: number }> {
      const peer = results[0]?.peers[0];
      const before = received;
      let sent = 0;
      const until = Date.now() + ms;
      while (Date.now() < until) {
        try {
          clients[0]?.send(Buffer.from(`tick ${sent}`), peer?.port ?? 0, LOOPBACK);
          sent++;
        } catch {
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { sent, received: received - before };
    },
    /** Client 0 sends `count` datagrams to client 1 through the relay at once. */
    async burst(count: number): Promise<{ received: number }> {
      const peer = results[0]?.peers[0];
      const before = received;
      for (let i = 0; i < count; i++) {
        clients[0]?.send(Buffer.from(`burst ${i}`), peer?.port ?? 0, LOOPBACK);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      return { received: received - before };
    },
    async close(): Promise<void> {
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}

/** Two free UDP ports in a row on loopback, as `holepunch-server PORT` wants PORT and PORT+1. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const sockets = [dgram.createSocket('udp6'), dgram.createSocket('udp6')];
    const bound = await Promise.all(
      sockets.map(
        (socket, i) =>
          new Promise<boolean>((resolve) => {
            socket.once('error', () => resolve(false));
            socket.bind({ port: port + i, address: '::', exclusive: true }, () => resolve(true));
          }),
      ),
    );
    await Promise.all(
      sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
    );
    if (bound.every((ok) => ok)) return port;
  }
  throw new Error('no two free UDP ports in a row');
}

/** Sends a v2 `probe` to 127.0.0.1:`port` and returns the reply and the port it came from. */
async function probe(port: number, changePort: boolean) {
  const socket = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const reply = new Promise<{ fromPort: number; altPort: number }>((resolve) => {
      socket.on('message', (data, from) => {
        const decoded = decodeV2(data);
        if (decoded.ok && decoded.msg.type === 'probe_reply') {
          resolve({ fromPort: from.port, altPort: decoded.msg.altPort });
        }
      });
    });
    const bytes = encodeV2({ type: 'probe', requestId: 7, changeAddress: false, changePort });
    // A probe that is answered is answered at once; a few copies cover a lost one.
    for (let copy = 0; copy < 3; copy++) socket.send(bytes, port, '127.0.0.1');
    return await withTimeout(reply, 2_000, `probe_reply from ${port}`);
  } finally {
    socket.close();
  }
}

describe("holepunch-server's alternate port (NAT probes): PORT+1 unless told otherwise", {
  timeout: 60_000,
}, () => {
  test('started as the README does (`holepunch-server PORT y`, no flag) it answers NAT probes from PORT+1, announced in the listening line and in every probe_reply', async () => {
    const port = await freePortPair();
    const cli = startCli([String(port), 'y']);
    const listening = await cli.logLine('listening');
    assert.equal(listening.port, port);
    assert.equal(listening.altPort, port + 1);
    // What a client measuring its NAT class does: probe PORT, then PORT+1.
    assert.deepEqual(await probe(port, false), { fromPort: port, altPort: port + 1 });
    assert.deepEqual(await probe(port + 1, false), { fromPort: port + 1, altPort: port + 1 });
    // A filtering test: asked on PORT, answered from the other port.
    assert.deepEqual(await probe(port, true), { fromPort: port + 1, altPort: port + 1 });
    cli.child.kill('SIGTERM');
    assert.equal((await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit')).code, 0);
  });

  test('PORT+1 taken: the server still starts and serves on PORT, without an alternate port, and says so in one "alternate port unavailable" warning', async () => {
    const port = await freePortPair();
    const squatter = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => squatter.bind(port + 1, '0.0.0.0', resolve));
    try {
      const cli = startCli([String(port), 'y']);
      const listening = await cli.logLine('listening');
      assert.equal(listening.port, port);
      assert.equal(listening.altPort, undefined, 'no alternate port is announced');
      const warning = await cli.logLine('alternate port unavailable');
      assert.equal(warning.level, 40, 'a warning');
      assert.equal(warning.altPort, port + 1);
      assert.equal(warning.code, 'EADDRINUSE');
      assert.match(String(warning.fix), /--alt-port/);
      // Probes on PORT are answered and announce no alternate port, so a client does not wait
      // for one.
      assert.deepEqual(await probe(port, false), { fromPort: port, altPort: 0 });
      cli.child.kill('SIGTERM');
      const result = await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit');
      assert.equal(result.code, 0);
      assert.equal(result.stdout.split('alternate port unavailable').length, 2, 'logged once');
    } finally {
      squatter.close();
    }
  });

  test('--alt-port (or HOLEPUNCH_ALT_PORT) moves it, the flag winning; an --alt-port that is taken stops the start (exit 1) naming it', async () => {
    const port = await freePortPair();
    const other = await freePortPair();
    const cli = startCli(['0', '--alt-port', String(other)], { HOLEPUNCH_ALT_PORT: String(port) });
    const listening = await cli.logLine('listening');
    assert.equal(listening.altPort, other, 'the flag wins');
    assert.deepEqual(await probe(listening.port as number, true), {
      fromPort: other,
      altPort: other,
    });
    cli.child.kill('SIGTERM');
    await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit');

    const fromEnv = startCli(['0'], { HOLEPUNCH_ALT_PORT: String(port) });
    assert.equal((await fromEnv.logLine('listening')).altPort, port);
    // The same port asked for again, while the first server holds it.
    const taken = await withTimeout(
      startCli(['0', '--alt-port', String(port)]).finished,
      EXIT_TIMEOUT_MS,
      'exit of a server whose --alt-port is taken',
    );
    assert.equal(taken.code, 1);
    assert.match(
      taken.stderr,
      new RegExp(`cannot bind the alternate port ${port} \\(--alt-port\\)`),
    );
    fromEnv.child.kill('SIGTERM');
    await withTimeout(fromEnv.finished, EXIT_TIMEOUT_MS, 'exit');
  });

  test('--no-alt-port (or HOLEPUNCH_NO_ALT_PORT=1) turns it off: probes announce none and a probe asking for it is not answered', async () => {
    for (const [args, env] of [
      [['0', '--no-alt-port'], {}],
      [['0'], { HOLEPUNCH_NO_ALT_PORT: '1' }],
    ] as const) {
      const cli = startCli(args, env);
      const listening = await cli.logLine('listening');
      assert.equal(listening.altPort, undefined, JSON.stringify(args));
      assert.deepEqual(await probe(listening.port as number, false), {
        fromPort: listening.port,
        altPort: 0,
      });
      await assert.rejects(probe(listening.port as number, true), /nothing within/);
      cli.child.kill('SIGTERM');
      await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit');
      assert.doesNotMatch((await cli.finished).stdout, /alternate port unavailable/);
    }
  });

  test('PORT 0 (any free port): the alternate port is any free port too', async () => {
    const cli = startCli(['0', 'y']);
    const listening = await cli.logLine('listening');
    const altPort = listening.altPort as number;
    assert.ok(Number.isInteger(altPort) && altPort > 0 && altPort !== listening.port);
    assert.deepEqual(await probe(listening.port as number, true), { fromPort: altPort, altPort });
    cli.child.kill('SIGTERM');
    await withTimeout(cli.finished, EXIT_TIMEOUT_MS, 'exit');
  });
});
