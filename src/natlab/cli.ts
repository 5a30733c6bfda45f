#!/usr/bin/env node
/**
 * npm run natlab -- up | down [--force] | probe | matrix [options]
 *   up      build the matrix lab, probe it, start the server, print how to use it; Ctrl-C tears down
 *   down    remove leftover hp-* namespaces of labs whose process is gone (--force: all)
 *   probe   build the lab, print the verified NAT table, tear down
 *   matrix  run every pair with our client and the legacy client at each loss level and
 *           write natlab/results/latest.json
 * matrix options: --trials N  --legacy-trials N  --loss 0,0.1,0.3  --clients v2,legacy  --legacy-loss 0,0.1,0.3
 *                 --types none,full-cone,...  --no-same-nat  --concurrency N  --out FILE
 */
import { parseArgs } from 'node:util';
import { HolePunchError } from '../errors.js';
import { SERVER_ADDRESS } from './addresses.js';
import { createLab, type Lab } from './lab.js';
import { removeLeftovers } from './leftovers.js';
import { type ClientKind, formatMatrix, matrixLabSpec, runMatrix, writeResults } from './matrix.js';
import { isNatType, NAT_TYPES, type NatType } from './nat-types.js';
import { formatVerdicts } from './probe.js';

/** Trials per pair, loss level and client unless --trials says otherwise. */
const DEFAULT_TRIALS = 5;

const list = (text: string | undefined) =>
  text === undefined ? undefined : text.split(',').filter((s) => s !== '');

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      force: { type: 'boolean', default: false },
      trials: { type: 'string' },
      'legacy-trials': { type: 'string' },
      loss: { type: 'string' },
      clients: { type: 'string' },
      'legacy-loss': { type: 'string' },
      types: { type: 'string' },
      'no-same-nat': { type: 'boolean', default: false },
      concurrency: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const command = positionals[0];
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
    process.stderr.write(
      'usage: natlab up | down [--force] | probe | matrix [--trials N] [--loss 0,0.1,0.3] [--clients v2,legacy] [--legacy-loss L,...] [--types T,...] [--no-same-nat] [--concurrency N] [--out FILE]\n',
    );
    return 2;
  }
  const types = (list(values.types) ?? [...NAT_TYPES]).map((t) => {
    if (!isNatType(t))
      throw new HolePunchError(
        'bad_request',
        `unknown NAT type ${t} (known: ${NAT_TYPES.join(', ')})`,
      );
    return t as NatType;
  });
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
    const lossLevels = list(values.loss)?.map(Number);
    const legacyLoss = list(values['legacy-loss'])?.map(Number);
    const report = await runMatrix(lab, {
      natTypes: types,
      sameNat,
      ...(lossLevels ? { lossLevels } : {}),
      ...(legacyLoss ? { legacyLossLevels: legacyLoss } : {}),
      clients: (list(values.clients) ?? ['v2', 'legacy']) as ClientKind[],
      trials: (_loss, client) =>
        client === 'legacy' && values['legacy-trials'] !== undefined
          ? Number(values['legacy-trials'])
          : Number(values.trials ?? DEFAULT_TRIALS),
      ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
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
