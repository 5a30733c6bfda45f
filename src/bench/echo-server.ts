/**
 * The reference: a bare `node:dgram` server that does the same datagram I/O as the rendezvous
 * server under the same load, and nothing else. Run as its own process by the benchmark:
 *   node dist/src/bench/echo-server.js [PORT]
 * It prints one JSON line `{"event":"listening","port":N}` and runs until SIGTERM/SIGINT.
 *
 * Reply shaping: a request carries its reply plan in its first bytes (see `encodeEchoRequest`):
 * a count K and K reply sizes. The echo answers with K datagrams of those sizes, so each
 * request costs it exactly as many receives and sends, of the same sizes, as the rendezvous
 * server spends on the real request (where `lobby:`/`peers:` fan out to every member).
 */
import dgram from 'node:dgram';
import { formatCliLine } from '../cli/index.js';
import { ECHO_MAX_REPLY_BYTES } from './echo-plan.js';

const port = Number(process.argv[2] ?? 0);
const host = process.argv[3] ?? '127.0.0.1';

// One buffer for every reply: the payload bytes are irrelevant, only count and size.
const replyBytes = Buffer.alloc(ECHO_MAX_REPLY_BYTES, 0x78);
const socket = dgram.createSocket('udp4');

function onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
  const count = msg.length > 0 ? (msg[0] as number) : 0;
  if (msg.length < 1 + 2 * count) return;
  for (let i = 0; i < count; i++) {
    const size = msg.readUInt16BE(1 + 2 * i);
    if (size > ECHO_MAX_REPLY_BYTES) return;
    socket.send(replyBytes, 0, size, rinfo.port, rinfo.address);
  }
}

socket.on('message', onMessage);
socket.on('error', (error) => {
  process.stderr.write(`echo server: ${error.message}\n`);
  process.exit(1);
});
socket.bind(port, host, () => {
  process.stdout.write(
    formatCliLine('echo-server', { event: 'listening', port: socket.address().port }),
  );
});

function stop(): void {
  socket.close(() => process.exit(0));
}
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
