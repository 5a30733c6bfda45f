/**
 * The NAT lab and engine suites test networks, NATs and Godot, not Node: `.ci/run` runs them
 * on its first Node version only, and for the second sets `HOLEPUNCH_LAB_SUITES_RAN` to the
 * version they ran on. Those suites then skip, saying so; everything else runs on both.
 */
export function labSuitesRanElsewhere(): string | false {
  const ran = process.env.HOLEPUNCH_LAB_SUITES_RAN;
  return ran ? `the NAT lab and engine suites ran on Node ${ran} earlier in this CI run` : false;
}
