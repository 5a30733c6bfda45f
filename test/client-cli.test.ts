import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { CLIENT_CLI_PATH, type ClientLine, findCliLine, parseCliLine } from '../src/cli/index.js';
import { type RunningServer, startServer } from '../src/server/shell.js';

const CLI = CLIENT_CLI_PATH;
const RUN_LIMIT_MS = 20_000;
/** `--keep-open` of the late-joiner test: long enough for a loaded machine's first punch. */
const KEEP_OPEN_MS = 12_000;

interface Outcome {
  code: number | null;
  lines: ClientLine[];
  stderr: string;
}

/** A line of `--json` output, or a test failure naming what was wrong with it. */
function clientLine(text: string): ClientLine {
  const parsed = parseCliLine('client', text);
  if (!parsed.ok) assert.fail(`${parsed.error}: ${text}`);
  return parsed.line;
}

const children = new Set<ChildProcess>();

/** Runs the CLI; `onLine` sees each JSON line as it comes (to signal the child, say). */
function run(
  args: string[],
  onLine?: (line: ClientLine, child: ChildProcess) => void,
  limitMs = RUN_LIMIT_MS,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let stderr = '';
    let seen = 0;
    child.stdout.on('data', (d) => {
      out += d;
      if (onLine === undefined) return;
      const lines = out.split('\n');
      for (; seen < lines.length - 1; seen++) {
        onLine(clientLine(lines[seen] as string), child);
      }
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('close', (code) => {
      clearTimeout(killer);
      children.delete(child);
      const lines = out
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map(clientLine);
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
      // A joiner says what it waits for before the host's lobby answers.
      assert.deepEqual(
        events.slice(0, 2),
        who === 'host' ? ['registered', 'lobby'] : ['waiting', 'registered'],
        who,
      );
      assert.ok(events.includes('lobby'), who);
      // The server's default alternate port lets the class be measured: loopback has no NAT,
      // so one public port for both server ports.
      assert.equal(findCliLine(r.lines, 'client', 'registered')?.nat, 'eim', who);
      const punched = findCliLine(r.lines, 'client', 'punched');
      assert.ok(punched !== undefined && punched.elapsedMs >= 0 && punched.localPort > 0);
      assert.equal(punched.peers.length, 1);
      assert.equal(punched.peers[0]?.name, who === 'host' ? 'j' : 'h');
      const rtt = findCliLine(r.lines, 'client', 'rtt');
      assert.ok(rtt !== undefined && rtt.sent >= 3 && rtt.sent <= 20 && rtt.received <= rtt.sent);
      assert.ok(rtt.received >= 1, `${who} got answers`);
      assert.equal(typeof rtt.rttMs, 'number');
    }
    const lobby = host.lines.filter((l) => l.event === 'lobby').at(-1);
    assert.deepEqual(lobby?.nicknames, ['Hö, st', 'j']);
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
    const refusal = refused.lines.at(-1);
    assert.deepEqual(
      { event: refusal?.event, code: refusal?.event === 'failed' ? refusal.code : undefined },
      { event: 'failed', code: 'session_exists' },
    );
    const timedOut = await taken;
    assert.equal(timedOut.code, 1);
    const last = timedOut.lines.at(-1);
    assert.equal(last?.event === 'failed' ? last.code : last, 'timeout');
    const usage = await run(['dance', 'x']);
    assert.equal(usage.code, 2);
  });

  it('Ctrl-C leaves cleanly and exits 130; the host is told who left', async () => {
    const common = ['--server', `127.0.0.1:${server.port}`, '--json'];
    let hostSawLeave: (() => void) | undefined;
    const left = new Promise<void>((resolve) => {
      hostSawLeave = resolve;
    });
    const host = run(
      ['host', 'cli:3', '--name', 'h', '--max-players', '3', ...common],
      (line, child) => {
        if (line.event === 'left') {
          hostSawLeave?.();
          child.kill('SIGINT');
        }
      },
    );
    const joiner = await run(['join', 'cli:3', '--name', 'bob', ...common], (line, child) => {
      const full = line.event === 'lobby' && line.nicknames.length === 2;
      if (full) child.kill('SIGINT');
    });
    assert.equal(joiner.code, 130, JSON.stringify(joiner.lines));
    assert.deepEqual(joiner.lines.at(-1), { event: 'interrupted', signal: 'SIGINT' });
    await left;
    const hosted = await host;
    assert.ok(hosted.lines.some((l) => l.event === 'left' && l.nickname === 'bob'));
    assert.equal(hosted.code, 130, JSON.stringify(hosted.lines));
  });

  it('host --keep-open: a player joining after the start is punched and tested by everyone still running, who name it', async () => {
    const common = ['--server', `127.0.0.1:${server.port}`, '--json'];
    let late: Promise<Outcome> | undefined;
    const host = run(
      ['host', 'cli:5', '--name', 'h', '--max-players', '3', '--finalize-after', '2500'].concat(
        ['--keep-open', String(KEEP_OPEN_MS)],
        common,
      ),
      (line) => {
        if (line.event !== 'punched' || late !== undefined) return;
        // A second after the start, as a player whose game took longer to load.
        late = new Promise((r) => setTimeout(r, 1000)).then(() =>
          run(['join', 'cli:5', '--name', 'late', ...common], undefined, 2 * KEEP_OPEN_MS),
        );
      },
      2 * KEEP_OPEN_MS,
    );
    const first = run(['join', 'cli:5', '--name', 'j', ...common], undefined, 2 * KEEP_OPEN_MS);
    const [hosted, joined] = await Promise.all([host, first]);
    assert.ok(late !== undefined, 'the host punched');
    const lately = await late;
    for (const [who, r, others] of [
      ['host', hosted, ['j']],
      ['j', joined, ['h']],
    ] as const) {
      assert.equal(r.code, 0, `${who}: ${JSON.stringify(r.lines)} ${r.stderr}`);
      assert.deepEqual(
        findCliLine(r.lines, 'client', 'punched')?.peers.map((p) => p.name),
        others,
        who,
      );
      const open = findCliLine(r.lines, 'client', 'open');
      assert.ok(
        open !== undefined && open.ms > 0 && open.ms <= KEEP_OPEN_MS,
        `${who}: ${JSON.stringify(r.lines)}`,
      );
      assert.equal(findCliLine(r.lines, 'client', 'joined')?.peer.name, 'late', who);
      const rtt = r.lines.filter((l) => l.event === 'rtt' && l.peer === 'late');
      assert.equal(rtt.length, 1, `${who} tested the late joiner once`);
      assert.ok(rtt[0]?.event === 'rtt' && rtt[0].received >= 1, `${who} got answers from it`);
    }
    assert.equal(lately.code, 0, JSON.stringify(lately.lines));
    const punched = findCliLine(lately.lines, 'client', 'punched');
    assert.deepEqual(punched?.peers.map((p) => p.name).sort(), ['h', 'j']);
    const answered = lately.lines.filter((l) => l.event === 'rtt' && l.received >= 1);
    assert.equal(answered.length, 2, JSON.stringify(lately.lines));
    const usage = await run(['join', 'x', '--keep-open', '10']);
    assert.equal(usage.code, 2, "--keep-open is the host's");
  });

  it('a full lobby on a server that waits for the host says so', async () => {
    const manual = await startServer({ port: 0, host: '127.0.0.1', autostart: false });
    try {
      const common = ['--server', `127.0.0.1:${manual.port}`, '--json'];
      const starting = (line: ClientLine) => line.event === 'waiting' && line.for === 'start';
      // The joiner is interrupted first: a host that left first would close the lobby under it.
      let hostChild: ChildProcess | undefined;
      let hostWaits = false;
      const host = run(['host', 'cli:4', '--name', 'h', ...common], (line, child) => {
        hostChild = child;
        if (starting(line)) hostWaits = true;
      });
      const join = await run(['join', 'cli:4', '--name', 'j', ...common], (line, child) => {
        if (!starting(line)) return;
        // Both said it (each 1.5 s after the lobby filled; bounded wait), then the joiner goes.
        void (async () => {
          for (let i = 0; i < 50 && !hostWaits; i++) await new Promise((r) => setTimeout(r, 50));
          child.kill('SIGINT');
        })();
      });
      assert.equal(join.code, 130, JSON.stringify(join.lines));
      assert.ok(join.lines.some(starting));
      hostChild?.kill('SIGINT');
      const hosted = await host;
      assert.ok(hosted.lines.some(starting), JSON.stringify(hosted.lines));
      assert.equal(hosted.code, 130);
    } finally {
      await manual.close();
    }
  });
});
