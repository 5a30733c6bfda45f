// The deployment kit in deploy/: the systemd unit passes `systemd-analyze verify` without a
// single warning, keeps its sandbox, and its example environment file starts the real CLI.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SERVER_CLI_PATH } from '../src/cli/index.js';
import { unitTier } from './suites.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = SERVER_CLI_PATH;
const UNIT = 'holepunch-server.service';
const unitText = readFileSync(join(ROOT, 'deploy', UNIT), 'utf8');
const envText = readFileSync(join(ROOT, 'deploy', 'holepunch-server.env'), 'utf8');

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const skipAnalyze =
  !hasAnalyze && process.env.CI !== 'true'
    ? 'systemd-analyze is not installed (apt-get install systemd; .ci/run does)'
    : false;

/** `NAME=value` lines of the example environment file. */
function exampleEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of envText.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (match) env[match[1] as string] = match[2] as string;
  }
  return env;
}

describe('deploy/holepunch-server.service', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hp-unit-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('keeps its sandbox and reads the environment file', () => {
    for (const line of [
      'DynamicUser=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'PrivateDevices=yes',
      'NoNewPrivileges=yes',
      'CapabilityBoundingSet=',
      'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
      'SystemCallFilter=@system-service',
      'MemoryMax=1G',
      'EnvironmentFile=-/etc/holepunch/holepunch-server.env',
      'KillSignal=SIGTERM',
    ]) {
      assert.ok(unitText.split('\n').includes(line), `the unit has ${line}`);
    }
  });

  test('tells the operator to open the alternate port (PORT+1) beside PORT and the relay range, and shows the nftables line that limits both', () => {
    assert.match(unitText, /HOLEPUNCH_ALT_PORT, default PORT\+1 = 4001/);
    assert.match(unitText, /HOLEPUNCH_RELAY_PORTS/);
    assert.match(unitText, /nft -D PORT=4000 -D ALT_PORT=4001 -f \/etc\/holepunch\/holepunch\.nft/);
  });

  test('passes systemd-analyze verify with no warning', { skip: skipAnalyze }, async () => {
    // verify checks that ExecStart's program exists; the package is not installed globally on
    // a test machine, so point it at this build (the only line changed).
    const execStart = /^ExecStart=.*$/m;
    assert.match(unitText, execStart);
    const unit = join(dir, UNIT);
    writeFileSync(unit, unitText.replace(execStart, `ExecStart=${process.execPath} ${CLI}`));
    const result = await promisify(execFile)('systemd-analyze', ['verify', unit], {
      timeout: 60_000,
    }).catch((error: { code?: number; stdout?: string; stderr?: string }) => error);
    const stderr = result.stderr ?? '';
    assert.equal('code' in result ? result.code : 0, 0, `systemd-analyze verify: ${stderr}`);
    // Unknown or misspelt keys are only warnings (exit 0): refuse them too.
    const ours = stderr.split('\n').filter((line) => line.includes(UNIT));
    assert.deepEqual(ours, [], 'no warning about the unit');
  });

  test('the example environment file starts the CLI with every variable it sets', async () => {
    const env = exampleEnv();
    for (const name of Object.keys(env)) assert.match(name, /^HOLEPUNCH_/);
    const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout;
    for (const name of Object.keys(env)) assert.ok(help.includes(name), `--help names ${name}`);
    // Flags win: free ports instead of 4000 and 9400, which may be taken here.
    const child = spawn(process.execPath, [CLI, '0', '--metrics-port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const exited = once(child, 'exit');
    const deadline = Date.now() + 5_000;
    while (!stdout.includes('"msg":"metrics listening"') && Date.now() < deadline) {
      if (child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    assert.match(stdout, /"msg":"listening"/);
    const listening = JSON.parse(
      stdout.split('\n').find((line) => line.includes('"msg":"listening"')) as string,
    ) as Record<string, unknown>;
    assert.equal(listening.sessionTtlS, Number(env.HOLEPUNCH_SESSION_TTL));
    assert.equal(listening.maxSessions, Number(env.HOLEPUNCH_MAX_SESSIONS));
    assert.equal(listening.legacy, true);
    assert.equal(listening.relay, true);
    // The example leaves the alternate port at its default (PORT+1; a free one beside PORT 0).
    assert.equal(env.HOLEPUNCH_ALT_PORT, '');
    assert.equal(env.HOLEPUNCH_NO_ALT_PORT, '0');
    assert.ok(
      typeof listening.altPort === 'number' && listening.altPort !== listening.port,
      `an alternate port: ${JSON.stringify(listening)}`,
    );
    assert.match(stdout, /"msg":"metrics listening"/);
    assert.equal(code, 0);
  });
});

const nftText = readFileSync(join(ROOT, 'deploy', 'holepunch.nft'), 'utf8');
const canNft = process.getuid?.() === 0 && spawnSync('nft', ['--version']).status === 0;
const skipNft =
  unitTier() ||
  (!canNft && process.env.CI !== 'true' ? 'needs root and nft (apt-get install nftables)' : false);

describe('deploy/holepunch.nft', () => {
  test('limits floods to PORT and to the alternate port alike, and says how to load it with both', () => {
    const rules = nftText.split('\n').filter((line) => /^\s*udp dport/.test(line));
    assert.equal(rules.length, 2, 'one rule for IPv4 sources, one for IPv6');
    for (const rule of rules) assert.match(rule, /udp dport \{ \$PORT, \$ALT_PORT \} /);
    assert.match(nftText, /nft -D PORT=4000 -D ALT_PORT=4001 -f /);
  });

  test('nft accepts it with PORT and ALT_PORT (check mode: nothing is loaded)', {
    skip: skipNft,
  }, () => {
    const check = spawnSync(
      'nft',
      ['-c', '-D', 'PORT=4000', '-D', 'ALT_PORT=4001', '-f', join(ROOT, 'deploy', 'holepunch.nft')],
      { encoding: 'utf8' },
    );
    assert.equal(check.status, 0, check.stderr);
  });
});
