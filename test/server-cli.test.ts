import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/server.js', import.meta.url));
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
    /** Resolves with the first stdout JSON line whose msg is `msg`. */
    async logLine(msg: string): Promise<Record<string, unknown>> {
      const deadline = Date.now() + STARTUP_TIMEOUT_MS;
      while (Date.now() < deadline && child.exitCode === null) {
        for (const line of stdout.split('\n')) {
          if (!line.startsWith('{')) continue;
          const record = JSON.parse(line) as Record<string, unknown>;
          if (record.msg === msg) return record;
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
      'HOLEPUNCH_PORT',
      'HOLEPUNCH_METRICS_PORT',
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
    ];
    const results = await Promise.all(cases.map((env) => startCli([], env).finished));
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
      const refused = await cli.logLine('member refused');
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
});
