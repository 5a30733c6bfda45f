import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type RunningServer, startServer } from '../src/server/shell.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RUN_LIMIT_MS = 15_000;
/** The documented quick start must stay short. */
const MAX_QUICK_START_LINES = 15;

/** The first ```js block of `file` that creates a HolePunchClient. */
function quickStart(file: string): string {
  for (const m of readFileSync(join(ROOT, file), 'utf8').matchAll(/```js\n([\s\S]*?)```/g)) {
    if (m[1]?.includes('new HolePunchClient')) return m[1];
  }
  throw new Error(`no quick start found in ${file}`);
}

function run(file: string, arg: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, arg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), RUN_LIMIT_MS);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, out });
    });
  });
}

describe('the documented quick start', () => {
  let server: RunningServer;
  let dir: string;

  before(async () => {
    // The README's first command: the server on UDP 4000, every interface.
    server = await startServer({ port: 4000 });
    // Inside the package, so that the block's own import of the package by name resolves
    // (a package may import itself by the name in its package.json).
    dir = mkdtempSync(join(ROOT, 'dist', 'quick-start-'));
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const doc of ['README.md', 'docs/client.md']) {
    it(`in ${doc} is under 15 lines, runs as written, and host and player print each other's greeting`, async () => {
      const code = quickStart(doc);
      assert.ok(code.trim().split('\n').length < MAX_QUICK_START_LINES);
      const file = join(dir, `game-${doc.replace('/', '-')}.mjs`);
      writeFileSync(file, code);
      const [host, player] = await Promise.all([run(file, 'host'), run(file, 'join')]);
      assert.equal(host.code, 0, host.out);
      assert.equal(player.code, 0, player.out);
      assert.match(host.out, /: hi from bob\n/);
      assert.match(player.out, /: hi from alice\n/);
    });
  }
});
