/**
 * Time-to-punch: the simulated traversal (virtual time, real cores) and the NAT lab runs
 * (real processes in network namespaces). Each returns `undefined` figures with a reason when
 * it cannot run here, so the benchmark still completes.
 */
import { simulateTraversal } from '../sim/index.js';

export interface PunchFigures {
  /** Successful runs' times, ascending, ms. */
  readonly timesMs: readonly number[];
  readonly runs: number;
  readonly failures: number;
}

export type PunchOutcome =
  | { readonly ok: true; readonly figures: PunchFigures }
  | { readonly ok: false; readonly reason: string };

/** The simulated network of issue 6: every link 20 ms one way (RTT to the server 40 ms). */
export const SIM_ONE_WAY_DELAY_MS = 20;
/** Loss on every datagram, both directions. */
export const SIM_LOSS_RATE = 0.05;

/**
 * `runs` traversals of a port-restricted pair, one seed each (so losses fall differently),
 * in virtual time: the time of a run is when the later of the two clients punched, measured
 * from both starting together.
 */
export async function measureSimPunch(runs: number): Promise<PunchOutcome> {
  const timesMs: number[] = [];
  let failures = 0;
  for (let seed = 1; seed <= runs; seed++) {
    const result = simulateTraversal({
      players: 2,
      natA: 'port-restricted',
      natB: 'port-restricted',
      oneWayDelayMs: SIM_ONE_WAY_DELAY_MS,
      lossRate: SIM_LOSS_RATE,
      seed,
    });
    if (result.ok) timesMs.push(result.elapsedMs);
    else failures++;
  }
  timesMs.sort((a, b) => a - b);
  return { ok: true, figures: { timesMs, runs, failures } };
}

export interface LabPunchOutcome {
  readonly v2: PunchOutcome;
  readonly legacy: PunchOutcome;
}

export async function measureLabPunch(
  _v2Runs: number,
  _legacyRuns: number,
): Promise<LabPunchOutcome> {
  const reason = 'the NAT lab API is not available yet';
  return { v2: { ok: false, reason }, legacy: { ok: false, reason } };
}
