// The package as a user gets it: `npm pack` of this repository, installed into a fresh
// project with `--omit=dev` (so no TypeScript), then both CLIs run through `npx` and the
// package imported by its name. Needs the built dist/ (the test runs from it). Offline: the
// runtime dependencies are packed from this clone's node_modules and installed beside the
// tarball with `--offline`, so nothing is fetched from a registry.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NAME = 'holepunch-rendezvous';
const CLIS = ['holepunch-server', 'holepunch-client'] as const;
/** Every child process is killed after this long. */
const CHILD_LIMIT_MS = 45_000;
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';

/** Scripts npm runs when a package is installed: a package that has one gets a warning. */
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare'] as const;
/** How long the README's server may wait for UDP 4000 (another suite may hold it briefly). */
const PORT_4000_WAIT_MS = 30_000;

/**
 * The environment without the npm_* variables of an enclosing `npm test` (omit, prefix, ...)
 * and without HOLEPUNCH_ settings (the CLIs run on their defaults). Offline: `npx` and
 * `npm install` may not fetch anything (an `npx holepunch-server` that did not find our
 * package would otherwise download whatever the registry has under that name).
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig']);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('HOLEPUNCH_')) continue;
    if (!key.toLowerCase().startsWith('npm_') || keep.has(key.toLowerCase())) env[key] = value;
  }
  env.npm_config_offline = 'true';
  return env;
}

/** The installed directories of our runtime dependencies and theirs, from this clone. */
function runtimeDependencyDirs(): string[] {
  const found = new Set<string>();
  const locate = (name: string, from: string): string => {
    for (let dir = from; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return realpathSync(candidate);
      if (dirname(dir) === dir) throw new Error(`${name} is not installed (run npm ci)`);
    }
  };
  const walk = (dir: string): void => {
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const name of Object.keys(manifest.dependencies ?? {})) {
      const at = locate(name, dir);
      if (found.has(at)) continue;
      found.add(at);
      walk(at);
    }
  };
  walk(ROOT);
  return [...found];
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

  let installOutput = '';

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
    // The runtime dependencies as tarballs too, so the install needs no registry.
    const deps = join(dir, 'deps');
    mkdirSync(deps);
    const depPack = await run(
      NPM,
      [
        'pack',
        '--ignore-scripts',
        '--json',
        '--pack-destination',
        deps,
        ...runtimeDependencyDirs(),
      ],
      ROOT,
    );
    ok(depPack, 'npm pack of the runtime dependencies');
    const depFiles = (JSON.parse(depPack.stdout) as { filename: string }[]).map((d) =>
      join(deps, d.filename),
    );
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
        '--offline',
        '--no-package-lock',
        join(dir, info.filename),
        ...depFiles,
      ],
      project,
    );
    ok(install, 'npm install of the tarball');
    installOutput = `${install.stdout}\n${install.stderr}`;
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

  it('has no install script, so npm installs it without an install-scripts warning', () => {
    const installed = JSON.parse(
      readFileSync(join(project, 'node_modules', NAME, 'package.json'), 'utf8'),
    ) as { scripts?: Record<string, string> };
    for (const script of INSTALL_SCRIPTS) {
      assert.equal(installed.scripts?.[script], undefined, `no ${script} script`);
    }
    const ours = installOutput.split('\n').filter((line) => line.includes(`${NAME}@`));
    assert.deepEqual(
      ours.filter((line) => /warn/i.test(line)),
      [],
      'npm warns about nothing of ours',
    );
  });

  it('`npm publish --dry-run` warns about nothing but the dry run not being logged in', async () => {
    // dist/ is built: skip prepack's rebuild; offline, nothing is sent anywhere.
    const r = await run(NPM, ['publish', '--dry-run', '--ignore-scripts'], ROOT);
    ok(r, 'npm publish --dry-run');
    const warnings = r.stderr
      .split('\n')
      .filter((line) => /\bwarn\b/i.test(line) && !/requires you to be logged in/.test(line));
    assert.deepEqual(warnings, []);
    assert.match(r.stdout, new RegExp(`\\+ ${NAME}@`));
  });

  it("runs the README's commands from the installed package, on loopback: `npx holepunch-server 4000 y`, then `npx holepunch-client host` and `join` punch through it and exchange test datagrams", async () => {
    const server = await startNpxServer(project);
    try {
      const session = `pkg-${randomBytes(4).toString('hex')}`;
      const client = (role: 'host' | 'join') =>
        run(
          NPX,
          [
            'holepunch-client',
            role,
            session,
            '--server',
            '127.0.0.1:4000',
            '--json',
            '--timeout',
            '20000',
          ],
          project,
        );
      const host = client('host');
      const join = client('join');
      for (const [role, r] of [
        ['host', await host],
        ['join', await join],
      ] as const) {
        ok(r, `npx holepunch-client ${role}`);
        const events = r.stdout
          .trim()
          .split('\n')
          .map((line) => (JSON.parse(line) as { event: string }).event);
        assert.ok(events.includes('punched'), `${role}: ${r.stdout}`);
        assert.ok(events.includes('rtt'), `${role}: ${r.stdout}`);
      }
    } finally {
      // npx runs the server as its child: end the whole group this test started.
      if (server.pid !== undefined) process.kill(-server.pid, 'SIGTERM');
      await once(server, 'exit');
    }
  });
});

/**
 * `npx holepunch-server 4000 y` in `project`, in a process group of its own; resolves once the
 * server listens. Port 4000 is fixed, as the README has it: while another process holds it,
 * retry (bounded).
 */
async function startNpxServer(project: string): Promise<ChildProcess> {
  const deadline = Date.now() + PORT_4000_WAIT_MS;
  for (;;) {
    const child = spawn(NPX, ['holepunch-server', '4000', 'y'], {
      cwd: project,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32',
      shell: process.platform === 'win32',
    });
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    const startBy = Date.now() + CHILD_LIMIT_MS;
    while (!out.includes('"msg":"listening"') && child.exitCode === null && Date.now() < startBy) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (out.includes('"msg":"listening"')) return child;
    if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    if (Date.now() > deadline || !out.includes('EADDRINUSE')) {
      throw new Error(`npx holepunch-server 4000 y did not start: ${out}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Every Markdown file a user reads: the README and docs/ (Godot's docs among them). */
function userDocs(): { file: string; text: string }[] {
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => join('docs', f))];
  return files
    .filter((f) => f.endsWith('.md'))
    .map((file) => ({ file, text: readFileSync(join(ROOT, file), 'utf8') }));
}

describe('what the docs tell a user to run', () => {
  it("a fresh clone's two commands: `npm ci && npm start` runs the server as `holepunch-server 4000 y` (built first), `npm test` the tests", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const quickStart = /## Quick start[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const commands = quickStart
      .trim()
      .split('\n')
      .map((line) => line.replace(/#.*$/, '').trim());
    assert.deepEqual(commands, ['npm ci && npm start', 'npm test']);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
      bin: Record<string, string>;
    };
    assert.equal(manifest.scripts.start, `node ${manifest.bin['holepunch-server']} 4000 y`);
    assert.equal(manifest.scripts.prestart, 'npm run build', 'npm start builds first');
    for (const script of INSTALL_SCRIPTS) {
      assert.equal(manifest.scripts[script], undefined, `no ${script} script`);
    }
  });

  it('no doc runs `npx holepunch-server` or `npx holepunch-client` where the package is not installed', () => {
    for (const { file, text } of userDocs()) {
      // `npx -p NAME` and `npm exec` fetch from the registry whatever holds that name.
      assert.doesNotMatch(text, /npx (-p|--package)\b|npm exec\b/, file);
      const paragraphs = text.split(/\n\s*\n/);
      paragraphs.forEach((paragraph, i) => {
        if (!/npx (--\S+ )*holepunch-(server|client)/.test(paragraph)) return;
        const context = `${paragraphs[i - 1] ?? ''}\n${paragraph}`;
        assert.match(
          context,
          /npm install (-g )?holepunch-rendezvous|has the package installed|package installed|installed package/,
          `${file}: npx without saying to install first:\n${paragraph}`,
        );
      });
    }
  });
});
