// Public face of the core contract: what every sans-IO core (server, v2 client, legacy
// client) implements and what the one driver (src/driver) runs. Types and a queue only.
export { type Core, drain, MAIN_SOCKET, type SocketId, type Work, WorkQueue } from './contract.js';
