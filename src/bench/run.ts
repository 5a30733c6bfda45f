#!/usr/bin/env node
/**
 * `npm run bench` (full run, < 6 min, 2.5 of them the attack phase) and
 * `node dist/src/bench/run.js --smoke` (seconds, for CI). Prints a table, then as its LAST line
 * one JSON object with every figure. `--attacks-only` runs the attack phase alone.
 * `--profile` adds a CPU profile of the server under the 2-player load (`--cpu-prof`).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchPlan, FULL_PLAN, runBench, SMOKE_PLAN } from './bench.js';

const USAGE = `Usage: node dist/src/bench/run.js [--smoke] [--attacks-only] [--profile] [--profile-dir DIR]

  --smoke            a few seconds: every phase, tiny sizes (figures are not meaningful)
  --attacks-only     only the attack phase: one-source floods beside legit lobbies, and the
                     worst memory attack (60 s) against a server under --max-old-space-size=96
  --profile          also run the server under load with --cpu-prof and summarise it
  --profile-dir DIR  where the .cpuprofile goes (default: a new temporary directory)
`;

async function main(): Promise<void> {
  let values: {
    smoke?: boolean;
    'attacks-only'?: boolean;
    profile?: boolean;
    'profile-dir'?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      options: {
        smoke: { type: 'boolean' },
        'attacks-only': { type: 'boolean' },
        profile: { type: 'boolean' },
        'profile-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  const base: BenchPlan = values.smoke === true ? SMOKE_PLAN : FULL_PLAN;
  const wantsProfile = values.profile === true || values['profile-dir'] !== undefined;
  const profileDir = wantsProfile
    ? (values['profile-dir'] ?? mkdtempSync(join(tmpdir(), 'holepunch-prof-')))
    : undefined;
  const result = await runBench({
    ...base,
    profileDir,
    attacksOnly: values['attacks-only'] === true,
  });
  process.stdout.write(`${result.table}\n`);
  process.stdout.write(`${JSON.stringify(result.json)}\n`);
}

await main();
