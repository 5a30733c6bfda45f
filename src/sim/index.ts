/**
 * The in-memory network simulator: virtual time, per-datagram one-way delay, seeded loss
 * and NAT models (RFC 4787) around the REAL sans-IO server and client cores.
 *
 * Quick use (benchmarks):
 *
 *   import { simulateTraversal } from 'holepunch-rendezvous/sim';
 *   const r = simulateTraversal({ players: 2, natA: 'port-restricted', natB: 'port-restricted',
 *     oneWayDelayMs: 20, lossRate: 0.05, seed: 7 });
 *   r.ok;            // every client reached `punched`
 *   r.punchedAtMs;   // per client: virtual ms from its startTraversal to its holePunched
 *   r.elapsedMs;     // max of punchedAtMs (the lobby is connected), NaN when not ok
 *   r.path;          // 'public' | 'local' | 'predicted' | 'reflexive' (host -> player1)
 *   r.clients[i].failedCode // e.g. 'punch_failed' for symmetric <-> symmetric
 *
 * Options: players (default 2, player 0 hosts), natA (host) / natB (others) or nats[i]:
 * 'none' | 'full-cone' | 'address-restricted' | 'port-restricted' | 'symmetric'
 * (default port-restricted); sameLan (everyone behind one router: LAN candidates win);
 * oneWayDelayMs (default 20, applied to every datagram); lossRate (0..1, every datagram,
 * both directions, default 0); seed (default 1: runs are deterministic); punchBudgetMs;
 * joinDelayMs / hostDelayMs (when the players / the host start, virtual ms); relay and
 * classifyNat (default false; true runs the clients as HolePunchClient does by default: the
 * server relays and answers NAT probes on its alternate port, and the clients ask for both).
 *
 * Lower level: `SimNetwork` (addNat, addHost, bind, addAgent, run), `SimNat`, and `SimDriver`
 * (a core's work carried out on the network, every socket of it) drive any sans-IO core; see
 * test/sim-*.test.ts.
 */
export { SimDriver } from './driver.js';
export { NAT_TYPES, type NatType, SimNat } from './nat.js';
export {
  MAX_SIM_STEPS,
  type SimAgent,
  SimNetwork,
  type SimNetworkOptions,
  type SimReceive,
  type SimSocket,
  type SimTraceEvent,
} from './network.js';
export { seededBytes, seededRandom } from './random.js';
export {
  SIM_CLIENT_PORT,
  SIM_LIMIT_MS,
  SIM_SERVER,
  SIM_SERVER_ALT_PORT,
  type SimulatedClient,
  type SimulateTraversalOptions,
  type SimulateTraversalResult,
  simulateTraversal,
} from './traversal.js';
