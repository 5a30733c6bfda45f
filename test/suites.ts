/**
 * Which suites run where. `npm test` (and CI) runs everything; two things make suites skip,
 * saying why, never counting as passed where they are required:
 *
 * - The NAT lab and engine suites test networks, NATs and Godot, not Node: `.ci/run` runs them
 *   on its first Node version only, and for the second sets `HOLEPUNCH_LAB_SUITES_RAN` to the
 *   version they ran on.
 * - `npm run test:unit` (scripts/test-unit.mjs) sets `HOLEPUNCH_TEST_TIER=unit`: the fast tier
 *   of tests that need neither root, nor the NAT lab, nor an engine, nor a flood of the real
 *   server (the root, lab, engine and flood suites skip).
 */
export function labSuitesRanElsewhere(): string | false {
  const ran = process.env.HOLEPUNCH_LAB_SUITES_RAN;
  if (ran) return `the NAT lab and engine suites ran on Node ${ran} earlier in this CI run`;
  return unitTier();
}

/**
 * `skip` for a root, NAT-lab or engine suite's describe(): why it cannot run here (`reasons`
 * from its preflight), or false under CI=true, which must run it (or fail loudly).
 */
export function skipUnless(reasons: readonly string[], what: string): string | false {
  const ranElsewhere = labSuitesRanElsewhere();
  if (ranElsewhere) return ranElsewhere;
  return reasons.length > 0 && process.env.CI !== 'true'
    ? `${what} unavailable: ${reasons.join('; ')}`
    : false;
}

/** The reason a root, lab, engine or flood suite skips in `npm run test:unit`, else false. */
export function unitTier(): string | false {
  return process.env.HOLEPUNCH_TEST_TIER === 'unit'
    ? 'npm run test:unit runs no root, NAT-lab, engine or flood test (npm test does)'
    : false;
}
