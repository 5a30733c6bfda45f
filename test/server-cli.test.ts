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

function startCli(args: readonly string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  });
});
