// Public face of NAT classification: what public ports say about a NAT, shared by the client
// (its NAT class) and the doctor (its port allocation), so both mean the same by "sequential".
export { isSequentialStep, natClassOf, SEQUENTIAL_PORT_DELTA } from './classify.js';
