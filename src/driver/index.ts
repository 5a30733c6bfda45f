// Public face of the driver: the one node:dgram shell that runs every sans-IO core. Here
// datagrams enter and leave the process, sockets open and close, and the timer lives.
export { UdpDriver, type UdpDriverOptions } from './udp.js';
