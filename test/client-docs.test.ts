import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type RunningServer, startServer } from '../src/server/shell.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = pathToFileURL(join(ROOT, 'dist/src/index.js')).href;
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
    server = await startServer({ port: 0, host: '127.0.0.1' });
    dir = mkdtempSync(join(tmpdir(), 'hp-quickstart-'));
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const doc of ['README.md', 'docs/client.md']) {
    it(`in ${doc} is under 15 lines and connects a host and a player that greet each other`, async () => {
      const code = quickStart(doc);
      assert.ok(code.trim().split('\n').length < MAX_QUICK_START_LINES);
      const file = join(dir, `quick-start-${doc.replace('/', '-')}.mjs`);
      writeFileSync(
        file,
        code
          .replace(`'holepunch-rendezvous'`, `'${ENTRY}'`)
          .replace(
            `address: 'rendezvous.example', port: 4000`,
            `address: '127.0.0.1', port: ${server.port}`,
          )
          // Give the greeting time to arrive before the example closes its socket.
          .replace(
            'await client.close();',
            'await new Promise((r) => setTimeout(r, 500));\nawait client.close();',
          ),
      );
      const [host, player] = await Promise.all([run(file, 'host'), run(file, 'join')]);
      assert.equal(host.code, 0, host.out);
      assert.equal(player.code, 0, player.out);
      assert.match(host.out, /: hi from bob/);
      assert.match(player.out, /: hi from alice/);
    });
  }
});
