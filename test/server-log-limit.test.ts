import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { LogLimiter } from '../src/server/log-limit.js';
import { type RunningServer, startServer } from '../src/server/shell.js';

function captured(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { lines, logger: pino({ level }, stream) };
}

const flushed = () => new Promise((resolve) => setImmediate(resolve));

describe('log lines are rate-limited per kind', () => {
  test('past the limit in one second, lines are counted and summarised once, per kind', async () => {
    const { lines, logger } = captured('info');
    let now = 0;
    const limiter = new LogLimiter(logger, { linesPerSecond: 3, now: () => now });
    for (let i = 0; i < 10; i++) limiter.info({ i }, 'member refused');
    limiter.info({}, 'member joined');
    now = 1_000;
    limiter.info({ i: 10 }, 'member refused');
    limiter.flush();
    await flushed();
    const msgs = lines.map(
      (line) => `${line.msg}${line.suppressed ? ` ${line.kind} ${line.suppressed}` : ''}`,
    );
    assert.deepEqual(msgs, [
      'member refused',
      'member refused',
      'member refused',
      'member joined',
      'log lines suppressed member refused 7',
      'member refused',
    ]);
  });

  test('a forged flood of 20,000 refused registrations writes at most a few hundred lines; addresses only at debug', async () => {
    for (const level of ['info', 'debug']) {
      const { lines, logger } = captured(level);
      let server: RunningServer | undefined;
      try {
        server = await startServer({ port: 0, host: '127.0.0.1', logger });
        const from = { address: '127.0.0.1', port: 40_000 };
        const now = performance.now();
        // Forged: spread over 768 source addresses, each under its per-source quota, so that
        // every refusal reaches the logger (one source alone is cut off before that).
        const ranges = ['192.0.2', '198.51.100', '203.0.113'];
        for (let i = 0; i < 20_000; i++) {
          const forged = { address: `${ranges[i % 3]}.${Math.floor(i / 3) % 256}`, port: 40_000 };
          server.core.handle(now, forged, new TextEncoder().encode(`rc:n${i}:nowhere${i}:N`));
        }
        server.core.handle(now, from, new TextEncoder().encode('rs:real:2'));
        server.core.handle(now, from, new TextEncoder().encode('rc:ann:real:Ann'));
      } finally {
        await server?.close();
      }
      await flushed();
      const refused = lines.filter((line) => line.msg === 'member refused');
      assert.ok(refused.length <= 100, `${level}: ${refused.length} refused lines`);
      assert.equal(refused[0]?.reason, 'session_not_found');
      assert.equal(refused[0]?.key, 'nowhere0');
      const summaries = lines.filter((line) => line.msg === 'log lines suppressed');
      const suppressed = summaries.reduce((sum, line) => sum + (line.suppressed as number), 0);
      assert.equal(refused.length + suppressed, 20_000, `${level}: every line written or counted`);
      const joined = lines.find((line) => line.msg === 'member joined');
      assert.ok(joined, `${level}: the real join is still logged`);
      assert.equal(joined.name, 'ann');
      assert.equal(joined.key, 'real');
      assert.equal(joined.address, level === 'debug' ? '127.0.0.1' : undefined, level);
      assert.equal(joined.port, level === 'debug' ? 40_000 : undefined, level);
      assert.ok(lines.some((line) => line.msg === 'session created' && line.key === 'real'));
    }
  });
});
