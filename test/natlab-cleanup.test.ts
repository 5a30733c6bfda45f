import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import {
  createLab,
  LAB_PREFIX,
  labNamespaces,
  labUnavailableReasons,
} from '../src/natlab/index.js';
import { unitTier } from './suites.js';

const reasons = await labUnavailableReasons();
const skip =
  unitTier() ||
  (reasons.length > 0 && process.env.CI !== 'true'
    ? `NAT lab unavailable: ${reasons.join('; ')}`
    : false);
const ownPrefix = `${LAB_PREFIX}${process.pid}-`;
const LAB_MODULE = new URL('../src/natlab/index.js', import.meta.url).href;

/** Runs a small Node program that uses the lab; resolves with its output and exit. */
function child(
  source: string,
  options: { uid?: number; onLine?: (line: string, kill: () => void) => void } = {},
): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--input-type=module', '-e', source], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
    });
    let out = '';
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      for (const line of chunk.toString().split('\n'))
        options.onLine?.(line, () => proc.kill('SIGTERM'));
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

describe('NAT lab cleanup and refusal', { skip }, () => {
  it('a lab whose build fails half way removes the namespaces it had already created', async () => {
    const before = await labNamespaces(ownPrefix);
    await assert.rejects(
      createLab({
        sites: [
          { name: 'fine', nat: 'port-restricted' },
          // Invalid on purpose: the failure comes after the public segment and a site exist.
          { name: 'BAD NAME', nat: 'symmetric' },
        ],
      }),
      /invalid or taken/,
    );
    assert.deepEqual(await labNamespaces(ownPrefix), before);
  });

  it('a process killed with SIGTERM while its lab is up leaves no namespace behind', async () => {
    let childPrefix = '';
    const result = await child(
      `import { createLab } from '${LAB_MODULE}';
       const lab = await createLab({ sites: [{ name: 'a', nat: 'port-restricted' }], probe: false });
       console.log('UP ' + lab.prefix);
       setInterval(() => {}, 1000);`,
      {
        onLine: (line, kill) => {
          if (line.startsWith('UP ')) {
            childPrefix = line.slice(3).trim();
            kill();
          }
        },
      },
    );
    assert.ok(childPrefix.startsWith(LAB_PREFIX), `the child built a lab: ${result.out}`);
    assert.equal(
      result.code,
      143,
      'the lab exits with the conventional SIGTERM status after tearing down',
    );
    assert.deepEqual(await labNamespaces(`${childPrefix}-`), []);
  });

  it('without root the lab refuses with a clear lab_unavailable message', async () => {
    const result = await child(
      `import { assertLabCapable } from '${LAB_MODULE}';
       try { await assertLabCapable(); console.log('BUILT'); } catch (e) { console.log(e.code + ': ' + e.message); }`,
      { uid: 65_534 },
    );
    assert.match(result.out, /lab_unavailable: the NAT lab cannot run here: needs root/);
  });

  it('after these tests no namespace of this test process is left', async () => {
    assert.deepEqual(await labNamespaces(ownPrefix), []);
  });
});
