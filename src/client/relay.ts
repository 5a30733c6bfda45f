/**
 * Our relay allocations (docs/protocol-v2.md, "Relay"): one per peer without a direct path,
 * asked for, bound and kept bound. Its own module: the relay is the fallback every strategy
 * ends in, with its own timings and state.
 */
import { KEEPALIVE_INTERVAL_MS } from './requests.js';

/** A bound relay allocation is bound again this often (one keepalive interval). */
export const RELAY_REBIND_MS = KEEPALIVE_INTERVAL_MS;

/** Our relay allocation towards one peer (docs/protocol-v2.md, "Relay"). */
export interface RelayState {
  phase: 'asking' | 'binding' | 'bound';
  port: number;
  id: Uint8Array;
  /** Signs each `relay_bind` (a fresh counter each time: `encodeRelayBind`). */
  bindToken: Uint8Array;
  /** The next bind: a retry while binding, the refresh once bound. */
  nextBindAt: number;
  bindIntervalMs: number;
}
