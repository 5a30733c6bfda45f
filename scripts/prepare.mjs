// `prepare` runs after `npm ci` / `npm install` in a clone. It builds dist/ when the dev
// dependencies are there (the usual clone: `npm ci && npx holepunch-server 4000 y`), and skips
// with a message when they are not (`npm ci --omit=dev`, where `tsc` does not exist). The
// published tarball never needs it: `prepack` builds, so the package ships compiled JS.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
try {
  require.resolve('typescript/package.json');
} catch {
  console.log(
    'prepare: TypeScript is not installed (dev dependencies omitted), skipping the build.',
  );
  console.log(
    'prepare: run `npm ci` (with dev dependencies), then `npm run build`, to build dist/.',
  );
  process.exit(0);
}
const npm = process.env.npm_execpath;
const result = npm
  ? spawnSync(process.execPath, [npm, 'run', 'build'], { stdio: 'inherit' })
  : spawnSync('npm', ['run', 'build'], { stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(result.status ?? 1);
