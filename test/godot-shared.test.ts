import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  GODOT_SHARED_PATH,
  godotSharedValues,
  renderGodotShared,
} from '../src/client/godot-shared.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ADDON = join(ROOT, 'godot', 'addons', 'holepunch');

/**
 * Issue 23 point 1: what the addon shares with the TypeScript client is generated from it, and
 * the addon takes those values from the generated file only, so a constant changed in
 * TypeScript alone fails here.
 */
describe('the GDScript file of shared constants and the strategy table', () => {
  it('the committed file equals what the TypeScript client produces now', () => {
    const committed = readFileSync(join(ROOT, GODOT_SHARED_PATH), 'utf8');
    assert.equal(
      committed,
      renderGodotShared(),
      `${GODOT_SHARED_PATH} is stale: run npx tsc -p . && node dist/src/client/godot-shared.js --write`,
    );
  });

  it('no addon script defines a shared name with a value of its own', () => {
    const names = Object.keys(godotSharedValues());
    const scripts = readdirSync(ADDON).filter(
      (f) => f.endsWith('.gd') && join(ADDON, f) !== join(ROOT, GODOT_SHARED_PATH),
    );
    const own: string[] = [];
    let aliases = 0;
    for (const file of scripts) {
      const text = readFileSync(join(ADDON, file), 'utf8');
      for (const m of text.matchAll(/^const (\w+)\b(.*)$/gm)) {
        const [, name, rest] = m as unknown as [string, string, string];
        if (!names.includes(name)) continue;
        if (rest.trim() === `:= Shared.${name}`) aliases++;
        else own.push(`${file}: const ${name}${rest}`);
      }
    }
    assert.deepEqual(own, []);
    assert.ok(aliases >= 60, `${aliases} shared constants in the addon`);
  });
});
