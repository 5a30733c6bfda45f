// `npm run test:unit`: the fast tier. Runs every test file with HOLEPUNCH_TEST_TIER=unit, so the
// suites that need root, the NAT lab, an engine or a flood of the real server skip (saying so,
// test/suites.ts) and the rest run, several files at once. `npm test` still runs everything.
import { spawnSync } from 'node:child_process';

const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=4', '--test-timeout=120000', 'dist/test/'],
  { stdio: 'inherit', env: { ...process.env, HOLEPUNCH_TEST_TIER: 'unit' } },
);
process.exit(result.status ?? 1);
