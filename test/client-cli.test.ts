import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type RunningServer, startServer } from '../src/server/shell.js';

const CLI = fileURLToPath(new URL('../src/cli/client.js', import.meta.url));
const RUN_LIMIT_MS = 20_000;

interface Outcome {
  code: number | null;
  lines: Record<string, unknown>[];
  stderr: string;
}

const children = new Set<ChildProcess>();

function run(args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), RUN_LIMIT_MS);
    child.on('close', (code) => {
      clearTimeout(killer);
      children.delete(child);
      const lines = out
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stderr });
    });
  });
}

describe('holepunch-client CLI', () => {
  let server: RunningServer;

  before(async () => {
    server = await startServer({ port: 0, host: '127.0.0.1' });
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await server.close();
  });

  it('host and join print registered, lobby, punched and rtt lines and exit 0', async () => {
    const common = ['--server', `127.0.0.1:${server.port}`, '--json'];
    const [host, join] = await Promise.all([
      run(['host', 'cli:1', '--name', 'h', '--nickname', 'Hö, st', ...common]),
      run(['join', 'cli:1', '--name', 'j', ...common]),
    ]);
    for (const [who, r] of [
      ['host', host],
      ['join', join],
    ] as const) {
      assert.equal(r.code, 0, `${who}: ${JSON.stringify(r.lines)} ${r.stderr}`);
      const events = r.lines.map((l) => l.event);
      assert.equal(events[0], 'registered', who);
      assert.ok(events.includes('lobby'), who);
      const punched = r.lines.find((l) => l.event === 'punched') as {
        elapsedMs: number;
        localPort: number;
        peers: { name: string; address: string; port: number; path: string }[];
      };
      assert.ok(punched.elapsedMs >= 0 && punched.localPort > 0);
      assert.equal(punched.peers.length, 1);
      assert.equal(punched.peers[0]?.name, who === 'host' ? 'j' : 'h');
      const rtt = r.lines.find((l) => l.event === 'rtt') as {
        peer: string;
        rttMs: number;
        sent: number;
        received: number;
      };
      assert.ok(rtt.sent >= 3 && rtt.sent <= 20 && rtt.received <= rtt.sent);
      assert.ok(rtt.received >= 1, `${who} got answers`);
      assert.equal(typeof rtt.rttMs, 'number');
    }
    const lobby = host.lines.filter((l) => l.event === 'lobby').at(-1) as { nicknames: string[] };
    assert.deepEqual(lobby.nicknames, ['Hö, st', 'j']);
  });

  it('a failure prints a failed line with the code and exits 1; bad usage exits 2', async () => {
    const taken = run([
      'host',
      'cli:2',
      '--server',
      `127.0.0.1:${server.port}`,
      '--json',
      '--timeout',
      '3000',
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const refused = await run(['host', 'cli:2', '--server', `127.0.0.1:${server.port}`, '--json']);
    assert.equal(refused.code, 1);
    assert.deepEqual(
      { event: refused.lines.at(-1)?.event, code: refused.lines.at(-1)?.code },
      { event: 'failed', code: 'session_exists' },
    );
    const timedOut = await taken;
    assert.equal(timedOut.code, 1);
    assert.equal(timedOut.lines.at(-1)?.code, 'timeout');
    const usage = await run(['dance', 'x']);
    assert.equal(usage.code, 2);
  });
});
