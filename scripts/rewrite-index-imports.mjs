#!/usr/bin/env node
// Rewrites imports that reach past another folder's index (`../protocol/v2.js`) to go
// through it (`../protocol/index.js`), the rule biome.json enforces. Run once the folders on
// its baseline are no longer being rewritten, after `npm run build` (the names an index
// exports are read from its built .d.ts):
//
//   npm run build && node scripts/rewrite-index-imports.mjs src && npx biome check --write src
//
// An import whose names the index does not export is left alone and reported: export them
// from that index first (or decide they are private), then run it again. With --dry-run it
// only reports.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const args = process.argv.slice(2);
const dryRun = args.includes('--dry-run');
const targets = args.filter((a) => a !== '--dry-run');
if (targets.length === 0) targets.push('src');

/** `import ... from '../folder/file.js'` (also `export ... from`), across lines. */
const IMPORT =
  /(import|export)(\s+type)?\s*(\{[^}]*\}|\*\s+as\s+\w+|\w+)?\s*(?:from\s*)?'(\.\.\/([\w-]+)\/([\w./-]+)\.js)'/g;

function files(path) {
  if (statSync(path).isDirectory())
    return readdirSync(path).flatMap((name) => files(join(path, name)));
  return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : [];
}

const exportCache = new Map();
/** Every name a built declaration file exports, following `export * from` / `export {} from`. */
function exportedNames(dts, seen = new Set()) {
  if (seen.has(dts)) return new Set();
  seen.add(dts);
  let text;
  try {
    text = readFileSync(dts, 'utf8');
  } catch {
    return new Set();
  }
  const names = new Set();
  for (const m of text.matchAll(/export\s*\*\s*from\s*'([^']+)'/g))
    for (const n of exportedNames(resolve(dirname(dts), m[1].replace(/\.js$/, '.d.ts')), seen))
      names.add(n);
  for (const m of text.matchAll(/export\s*(?:type\s*)?\{([^}]*)\}/g))
    for (const part of m[1].split(','))
      names.add(
        part
          .trim()
          .replace(/^type\s+/, '')
          .split(/\s+as\s+/)
          .pop()
          .trim(),
      );
  for (const m of text.matchAll(
    /export\s+(?:declare\s+)?(?:abstract\s+)?(?:const|let|function|class|interface|type|enum)\s+(\w+)/g,
  ))
    names.add(m[1]);
  names.delete('');
  return names;
}

function indexExports(srcFile, folder) {
  const dts = join(ROOT, 'dist', dirname(relative(ROOT, srcFile)), '..', folder, 'index.d.ts');
  if (!exportCache.has(dts)) exportCache.set(dts, exportedNames(resolve(dts)));
  return exportCache.get(dts);
}

let rewritten = 0;
let blocked = 0;
for (const file of targets.flatMap((t) => files(resolve(t)))) {
  const text = readFileSync(file, 'utf8');
  const next = text.replace(IMPORT, (whole, _kw, _type, clause, spec, folder, path) => {
    if (path === 'index') return whole;
    const names =
      clause?.startsWith('{') === true
        ? clause
            .slice(1, -1)
            .split(',')
            .map((p) =>
              p
                .trim()
                .replace(/^type\s+/, '')
                .split(/\s+as\s+/)[0]
                .trim(),
            )
            .filter((n) => n !== '')
        : undefined;
    const exported = indexExports(file, folder);
    const missing =
      names === undefined
        ? ['(namespace or default import)']
        : names.filter((n) => !exported.has(n));
    if (missing.length > 0) {
      blocked++;
      process.stdout.write(
        `${relative(ROOT, file)}: '${spec}' kept: ../${folder}/index.ts does not export ${missing.join(', ')}\n`,
      );
      return whole;
    }
    rewritten++;
    return whole.replace(`'${spec}'`, `'../${folder}/index.js'`);
  });
  if (next !== text && !dryRun) writeFileSync(file, next);
}
process.stdout.write(
  `${dryRun ? 'would rewrite' : 'rewrote'} ${rewritten} imports; ${blocked} need an index export first\n`,
);
