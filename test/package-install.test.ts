// The package as a user gets it: `npm pack` of this repository, installed into a fresh
// project with `--omit=dev` (so no TypeScript), then both CLIs run through `npx` and the
// package imported by its name. Needs the built dist/ (the test runs from it) and pino from
// the npm cache or the npm registry.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NAME = 'holepunch-rendezvous';
const CLIS = ['holepunch-server', 'holepunch-client'] as const;
/** Every child process is killed after this long. */
const CHILD_LIMIT_MS = 45_000;
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';

/** The environment without the npm_* variables of an enclosing `npm test` (omit, prefix, ...). */
function cleanEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_registry']);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.toLowerCase().startsWith('npm_') || keep.has(key.toLowerCase())) env[key] = value;
  }
  return env;
}

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      {
        cwd,
        env: cleanEnv(),
        timeout: CHILD_LIMIT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        shell: process.platform === 'win32',
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({
          code,
          stdout,
          stderr: error?.killed ? `${stderr}\n(killed after timeout)` : stderr,
        });
      },
    );
  });
}

function ok(r: Run, what: string): void {
  assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
}

describe(`the packed ${NAME} package`, () => {
  let dir: string;
  let project: string;

  before(async () => {
    assert.ok(existsSync(join(ROOT, 'dist/src/index.js')), 'build first (npm run build)');
    dir = mkdtempSync(join(tmpdir(), 'hp-package-'));
    project = join(dir, 'project');
    mkdirSync(project);
    // dist/ is already built (this test runs from it), so skip prepack's rebuild.
    const pack = await run(
      NPM,
      ['pack', '--ignore-scripts', '--json', '--pack-destination', dir],
      ROOT,
    );
    ok(pack, 'npm pack');
    const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(info !== undefined);
    const files = info.files.map((f) => f.path);
    assert.ok(files.includes('dist/src/index.js'), 'the tarball carries the built JS');
    assert.ok(files.includes('dist/src/cli/client.js') && files.includes('dist/src/cli/server.js'));
    assert.ok(!files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TS sources');
    assert.ok(!files.some((f) => f.startsWith('dist/test/')), 'no tests');
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'hp-install-probe', private: true, type: 'module' }),
    );
    const install = await run(
      NPM,
      [
        'install',
        '--omit=dev',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        '--no-package-lock',
        join(dir, info.filename),
      ],
      project,
    );
    ok(install, 'npm install of the tarball');
  });

  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('installs without TypeScript or any other dev dependency', () => {
    assert.ok(existsSync(join(project, 'node_modules', NAME, 'dist/src/index.js')));
    assert.ok(!existsSync(join(project, 'node_modules/typescript')));
    assert.ok(!existsSync(join(project, 'node_modules/@biomejs')));
  });

  for (const cli of CLIS) {
    it(`runs our ${cli} through npx`, async () => {
      const r = await run(NPX, ['--no-install', cli, '--help'], project);
      ok(r, `npx ${cli} --help`);
      assert.match(r.stdout, new RegExp(`^Usage: ${cli} `));
    });
  }

  it('imports by name: the root is the public API, the rest sits on subpaths', async () => {
    const probe = join(project, 'probe.mjs');
    writeFileSync(
      probe,
      `const keys = async (s) => Object.keys(await import(s)).sort();
const out = {};
for (const s of ['${NAME}', '${NAME}/client', '${NAME}/server', '${NAME}/protocol', '${NAME}/sim', '${NAME}/doctor']) {
  out[s] = await keys(s);
}
try {
  await import('${NAME}/dist/src/protocol/v2.js');
  out.deep = 'imported';
} catch (error) {
  out.deep = error.code;
}
const { HolePunchError, ERROR_CODES, isErrorCode } = await import('${NAME}');
out.error = new HolePunchError('timeout', 'x') instanceof Error && isErrorCode(ERROR_CODES[0]);
console.log(JSON.stringify(out));
`,
    );
    const r = await run(process.execPath, [probe], project);
    ok(r, 'node probe.mjs');
    const out = JSON.parse(r.stdout) as Record<string, string[]> & {
      deep: string;
      error: boolean;
    };
    assert.deepEqual(out[NAME], [
      'DEFAULT_PORT',
      'DEFAULT_SERVER',
      'ERROR_CODES',
      'HolePunchClient',
      'HolePunchError',
      'isErrorCode',
      'startServer',
    ]);
    assert.ok(out[`${NAME}/client`]?.includes('Traversal'));
    assert.ok(out[`${NAME}/client`]?.includes('PunchAttempt'));
    assert.ok(out[`${NAME}/server`]?.includes('RendezvousServer'));
    assert.ok(out[`${NAME}/server`]?.includes('startServer'));
    assert.ok(out[`${NAME}/protocol`]?.includes('encodeV2'));
    assert.ok(out[`${NAME}/sim`]?.includes('simulateTraversal'));
    assert.ok(out[`${NAME}/doctor`]?.includes('diagnoseNat'));
    assert.equal(out.deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED');
    assert.equal(out.error, true);
  });

  it('prepare skips the build, with a message, where TypeScript is not installed', async () => {
    // A copy of the script outside the repository cannot resolve typescript, as after
    // `npm ci --omit=dev` in a fresh clone.
    const script = join(dir, 'prepare.mjs');
    copyFileSync(join(ROOT, 'scripts/prepare.mjs'), script);
    const r = await run(process.execPath, [script], dir);
    ok(r, 'prepare.mjs');
    assert.match(r.stdout, /TypeScript is not installed/);
  });
});
