#!/usr/bin/env node
/**
 * npm run natlab -- up | down [--force] | probe | matrix [options]
 *   up      build the matrix lab, probe it, start the server, print how to use it; Ctrl-C tears down
 *   down    remove leftover hp-* namespaces of labs whose process is gone (--force: all)
 *   probe   build the lab, print the verified NAT table, tear down
 *   matrix  run every pair with our client and the legacy client at each loss level and
 *           write natlab/results/latest.json
 * matrix options: --trials N  --legacy-trials N  --loss 0,0.1,0.3  --clients v2,legacy  --legacy-loss 0,0.1,0.3
 *                 --types none,full-cone,...  --no-same-nat  --relay  --concurrency N  --out FILE
 */
import { parseArgs } from 'node:util';
import { HolePunchError } from '../errors.js';
import { SERVER_ADDRESS } from './addresses.js';
import { createLab, type Lab } from './lab.js';
import { removeLeftovers } from './leftovers.js';
import { type ClientKind, formatMatrix, matrixLabSpec, runMatrix, writeResults } from './matrix.js';
import { isNatType, MATRIX_NAT_TYPES, NAT_TYPES, type NatType } from './nat-types.js';
import { formatVerdicts } from './probe.js';

/** Trials per pair, loss level and client unless --trials says otherwise. */
const DEFAULT_TRIALS = 5;

const USAGE =
  'usage: natlab up | down [--force] | probe | matrix [--trials N] [--legacy-trials N] [--loss 0,0.1,0.3] [--clients v2,legacy] [--legacy-loss L,...] [--types T,...] [--no-same-nat] [--relay] [--concurrency N] [--out FILE]\n';

const list = (text: string | undefined) =>
  text === undefined ? undefined : text.split(',').filter((s) => s !== '');

/** A count or probability from the command line; a typo must not become NaN trials. */
function numberArg(name: string, text: string, max: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < 0 || value > max) {
    throw new HolePunchError('bad_request', `--${name} wants a number in 0..${max}, got '${text}'`);
  }
  return value;
}

function parseCommandLine() {
  return parseArgs({
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      force: { type: 'boolean', default: false },
      trials: { type: 'string' },
      'legacy-trials': { type: 'string' },
      loss: { type: 'string' },
      clients: { type: 'string' },
      'legacy-loss': { type: 'string' },
      types: { type: 'string' },
      'no-same-nat': { type: 'boolean', default: false },
      relay: { type: 'boolean', default: false },
      concurrency: { type: 'string' },
      out: { type: 'string' },
    },
  });
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine();
  } catch (error) {
    process.stderr.write(
      `natlab: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`,
    );
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'down') {
    const { removed, kept } = await removeLeftovers(values.force);
    process.stdout.write(
      `removed ${removed.length} namespace(s)${removed.length ? `: ${removed.join(' ')}` : ''}\n`,
    );
    if (kept.length)
      process.stdout.write(`kept ${kept.length} of live labs (use --force): ${kept.join(' ')}\n`);
    return 0;
  }
  if (command !== 'up' && command !== 'probe' && command !== 'matrix') {
    process.stderr.write(USAGE);
    return 2;
  }
  let types: NatType[];
  let lossLevels: number[] | undefined;
  let legacyLoss: number[] | undefined;
  let trials: number;
  let legacyTrials: number;
  let concurrency: number | undefined;
  let clients: ClientKind[];
  try {
    types = (list(values.types) ?? [...MATRIX_NAT_TYPES]).map((t) => {
      if (!isNatType(t)) {
        throw new HolePunchError(
          'bad_request',
          `unknown NAT type ${t} (known: ${NAT_TYPES.join(', ')})`,
        );
      }
      return t;
    });
    lossLevels = list(values.loss)?.map((l) => numberArg('loss', l, 1));
    legacyLoss = list(values['legacy-loss'])?.map((l) => numberArg('legacy-loss', l, 1));
    trials = numberArg('trials', values.trials ?? String(DEFAULT_TRIALS), 1000);
    legacyTrials =
      values['legacy-trials'] === undefined
        ? trials
        : numberArg('legacy-trials', values['legacy-trials'], 1000);
    concurrency =
      values.concurrency === undefined
        ? undefined
        : numberArg('concurrency', values.concurrency, 64);
    clients = (list(values.clients) ?? ['v2', 'legacy']).map((c) => {
      if (c !== 'v2' && c !== 'legacy') {
        throw new HolePunchError('bad_request', `unknown client ${c} (known: v2, legacy)`);
      }
      return c;
    });
  } catch (error) {
    process.stderr.write(
      `natlab: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`,
    );
    return 2;
  }
  const sameNat = !values['no-same-nat'];
  let lab: Lab | undefined;
  try {
    process.stderr.write('building and probing the lab...\n');
    lab = await createLab(matrixLabSpec(types, sameNat));
    process.stdout.write(
      `\nVerified NAT behaviour (${lab.prefix}):\n${formatVerdicts(lab.verdicts)}\n\n`,
    );
    if (command === 'probe') return 0;
    if (command === 'up') {
      await lab.startServer();
      process.stdout.write(
        `server: ${SERVER_ADDRESS}:${lab.serverPort} in namespace ${lab.serverNs}\n`,
      );
      for (const site of lab.sites) {
        for (const host of site.hosts) {
          process.stdout.write(
            `  ${host.name.padEnd(18)} ${site.nat.padEnd(26)} ip netns exec ${host.ns} ...\n`,
          );
        }
      }
      process.stdout.write('Ctrl-C tears the lab down.\n');
      await new Promise(() => {});
      return 0;
    }
    const report = await runMatrix(lab, {
      natTypes: types,
      sameNat,
      ...(lossLevels ? { lossLevels } : {}),
      ...(legacyLoss ? { legacyLossLevels: legacyLoss } : {}),
      clients,
      relay: values.relay,
      trials: (_loss, client) => (client === 'legacy' ? legacyTrials : trials),
      ...(concurrency === undefined ? {} : { concurrency }),
      onTrial: (r) =>
        process.stderr.write(
          `${r.ok ? 'ok  ' : 'FAIL'} ${r.client.padEnd(6)} ${r.pair.padEnd(52)} loss ${r.loss} #${r.trial} ${r.ok ? `${r.joinPath} ${r.timeToPunchMs} ms` : `${r.code} after ${r.timeToFailMs} ms`}\n`,
        ),
    });
    const file = await writeResults(report, values.out);
    process.stdout.write(
      `Matrix (${report.results.length} trials in ${(report.durationMs / 1000).toFixed(0)} s):\n`,
    );
    process.stdout.write(`${formatMatrix(report.summary, report.lossLevels)}\n\nwrote ${file}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`natlab: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    await lab?.destroy();
  }
}

process.exitCode = await main();
