import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { V2_VECTORS_PATH, v2Vectors } from '../src/protocol/vectors.js';
import {
  godot4Argv,
  godot4UnavailableReasons,
  makeProject,
  REPO_ROOT,
  removeProjects,
  scriptErrors,
  skipUnless,
  spawnJson,
} from './godot4-support.js';

/**
 * One codec, two languages (issue 14, point 4): the golden vectors are made by the TypeScript
 * codec (src/protocol/vectors.ts) and committed; the committed file must be what the codec
 * makes now, and the addon's GDScript codec must agree with every vector in real Godot 4.
 */

describe('v2 golden vectors', () => {
  it('the committed file equals what the TypeScript codec produces now', () => {
    const committed = JSON.parse(readFileSync(join(REPO_ROOT, V2_VECTORS_PATH), 'utf8'));
    assert.deepEqual(
      committed,
      JSON.parse(JSON.stringify(v2Vectors())),
      `${V2_VECTORS_PATH} is stale: run npx tsc -p . && node dist/src/protocol/vectors.js --write`,
    );
  });

  it('cover every message type and malformed input', () => {
    const vectors = v2Vectors();
    const covered = new Set(vectors.messages.map((m) => m.fields.type));
    for (const type of Object.keys(vectors.types)) assert.ok(covered.has(type), `no ${type}`);
    assert.ok(vectors.malformed.length >= 20);
  });
});

const reasons = godot4UnavailableReasons();

describe('the GDScript codec in real Godot 4', { skip: skipUnless(reasons, 'Godot 4') }, () => {
  after(removeProjects);

  it('decodes and encodes every golden vector as the TypeScript codec does', async () => {
    assert.deepEqual(reasons, [], reasons.join('; '));
    const project = await makeProject('vectors', {
      extra: [[join(REPO_ROOT, 'godot', 'tests'), 'tests']],
    });
    const proc = spawnJson(
      godot4Argv(project, {}, ['--script', 'res://tests/check_vectors.gd']),
      60_000,
    );
    const result = await proc.exited;
    const summary = proc.lines.find((l) => l.godot === 'vectors');
    const failures = proc.lines.filter((l) => l.godot === 'vector_failed');
    assert.deepEqual(scriptErrors(result.stderr), [], 'GDScript errors');
    assert.deepEqual(failures, [], 'vectors the GDScript codec disagrees with');
    assert.ok(summary !== undefined, `no summary line: ${result.stderr.slice(0, 2_000)}`);
    assert.equal(summary.failed, 0);
    assert.ok(Number(summary.passed) >= 80, `only ${summary.passed} checks ran`);
    assert.equal(result.code, 0);
    process.stdout.write(
      `# GDScript codec: ${summary.passed} checks passed in ${summary.engine}\n`,
    );
  });
});
