/**
 * The lab's UDP probe, run inside a namespace with `ip netns exec NS node probe-agent.js MODE`.
 * Modes:
 * - `observer ADDR:PORT...`: echoes every datagram's source back as JSON ("what address did
 *   you come from"), and on request sends unsolicited datagrams from another of its sockets,
 *   like a STUN server with CHANGE-REQUEST;
 * - `probe OBSERVERS_JSON LOCAL_PORT COLLISION_PORT LINGER_MS`: classifies the NAT in front
 *   of this host and prints one JSON line, then keeps answering on LOCAL_PORT for LINGER_MS
 *   (so another host can test hairpinning against it);
 * - `hairpin ADDR:PORT LOCAL_PORT`: sends to a public endpoint and says whether it answered.
 * This is a lab tool, not part of the client: it speaks JSON and may allocate freely.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { formatCliLine } from '../cli/index.js';

/** Each request is sent this many times, spaced by REQUEST_SPACING_MS (the lab has no loss during probes, but ARP may still be resolving). */
const REQUEST_ATTEMPTS = 5;
const REQUEST_SPACING_MS = 150;
/** How long to wait for an unsolicited datagram that filtering may drop. */
const UNSOLICITED_WAIT_MS = 600;
/** Copies an observer sends of each unsolicited datagram. */
const UNSOLICITED_COPIES = 3;
/** How long to let a router create (or not) its conntrack entry before the host sends. */
const COLLISION_SETTLE_MS = 300;

interface Message {
  op: string;
  id?: number;
  socket?: number;
  port?: number;
  address?: string;
  via?: number;
}

function parse(data: Buffer): Message | undefined {
  try {
    const value: unknown = JSON.parse(data.toString('utf8'));
    return typeof value === 'object' && value !== null && 'op' in value
      ? (value as Message)
      : undefined;
  } catch {
    return undefined;
  }
}

function splitEndpoint(text: string): { address: string; port: number } {
  const at = text.lastIndexOf(':');
  return { address: text.slice(0, at), port: Number(text.slice(at + 1)) };
}

function bind(port: number, address?: string): Promise<Socket> {
  const socket = createSocket('udp4');
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}

function send(socket: Socket, message: Message, address: string, port: number): void {
  socket.send(JSON.stringify(message), port, address);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function observer(endpoints: string[]): Promise<void> {
  const sockets: Socket[] = [];
  for (const text of endpoints) {
    const { address, port } = splitEndpoint(text);
    sockets.push(await bind(port, address));
  }
  sockets.forEach((socket, via) => {
    socket.on('message', (data: Buffer, from: RemoteInfo) => {
      const msg = parse(data);
      if (msg === undefined) return;
      if (msg.op === 'echo') {
        send(
          socket,
          { op: 'mapped', id: msg.id, address: from.address, port: from.port, via },
          from.address,
          from.port,
        );
        return;
      }
      const other = sockets[msg.socket ?? -1];
      if (other === undefined) return;
      // send-from: answer the requester from another socket; send-to-port: hit another port
      // of the requester's public address (to plant a conntrack entry on an accepting router).
      const port = msg.op === 'send-to-port' ? (msg.port ?? 0) : from.port;
      if (msg.op !== 'send-from' && msg.op !== 'send-to-port') return;
      for (let i = 0; i < UNSOLICITED_COPIES; i++) {
        setTimeout(
          () => send(other, { op: 'unsolicited', id: msg.id, via: msg.socket }, from.address, port),
          i * 50,
        );
      }
    });
  });
  process.stdout.write(formatCliLine('probe-agent', { event: 'observing', endpoints }));
}

class Inbox {
  readonly received: { msg: Message; from: RemoteInfo }[] = [];
  private waiter: (() => void) | undefined;
  constructor(socket: Socket) {
    socket.on('message', (data: Buffer, from: RemoteInfo) => {
      const msg = parse(data);
      if (msg === undefined) return;
      if (msg.op === 'hairpin') {
        send(socket, { op: 'hairpin-reply', id: msg.id }, from.address, from.port);
        return;
      }
      this.received.push({ msg, from });
      this.waiter?.();
    });
  }
  async waitFor(match: (m: Message, from: RemoteInfo) => boolean, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.received.find((r) => match(r.msg, r.from));
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

let nextId = 1;

async function request(
  socket: Socket,
  inbox: Inbox,
  to: { address: string; port: number },
  msg: Message,
) {
  const id = nextId++;
  for (let i = 0; i < REQUEST_ATTEMPTS; i++) {
    send(socket, { ...msg, id }, to.address, to.port);
    const hit = await inbox.waitFor((m) => m.op === 'mapped' && m.id === id, REQUEST_SPACING_MS);
    if (hit !== undefined) return { address: hit.msg.address ?? '', port: hit.msg.port ?? 0 };
  }
  return undefined;
}

async function probe(
  observersJson: string,
  localPort: number,
  collisionPort: number,
  lingerMs: number,
) {
  // observers: [A, B (other address), A' (A's address, other port), C (never contacted), A'' (collision)]
  const obs = (JSON.parse(observersJson) as string[]).map(splitEndpoint);
  const [a, b, aOtherPort, c, aCollision] = obs;
  if (
    a === undefined ||
    b === undefined ||
    aOtherPort === undefined ||
    c === undefined ||
    aCollision === undefined
  ) {
    throw new Error('probe needs five observer endpoints');
  }
  const main = await bind(localPort);
  const inbox = new Inbox(main);
  const mappedA = await request(main, inbox, a, { op: 'echo' });
  const mappedB = await request(main, inbox, b, { op: 'echo' });
  const askUnsolicited = async (socketIndex: number) => {
    const id = nextId++;
    send(main, { op: 'send-from', id, socket: socketIndex }, a.address, a.port);
    const hit = await inbox.waitFor(
      (m) => m.op === 'unsolicited' && m.id === id,
      UNSOLICITED_WAIT_MS,
    );
    return hit !== undefined;
  };
  const fromOtherPort = await askUnsolicited(2);
  const fromOtherAddress = await askUnsolicited(3);

  // Collision: let the observer hit the router's public address on collisionPort first, then
  // send from collisionPort to that same observer endpoint and see which port it reports.
  const collision = await bind(collisionPort);
  const collisionInbox = new Inbox(collision);
  send(
    main,
    { op: 'send-to-port', id: nextId++, socket: 4, port: collisionPort },
    a.address,
    a.port,
  );
  await sleep(COLLISION_SETTLE_MS);
  const mappedCollision = await request(collision, collisionInbox, aCollision, { op: 'echo' });
  collision.close();

  process.stdout.write(
    formatCliLine('probe-agent', {
      event: 'probed',
      localPort,
      mappedA,
      mappedB,
      fromOtherPort,
      fromOtherAddress,
      collisionPort,
      mappedCollision,
    }),
  );
  if (lingerMs > 0) await sleep(lingerMs);
  main.close();
}

async function hairpin(target: string, localPort: number) {
  const to = splitEndpoint(target);
  const socket = await bind(localPort);
  let answered = false;
  socket.on('message', (data: Buffer) => {
    if (parse(data)?.op === 'hairpin-reply') answered = true;
  });
  for (let i = 0; i < REQUEST_ATTEMPTS && !answered; i++) {
    send(socket, { op: 'hairpin', id: i }, to.address, to.port);
    await sleep(REQUEST_SPACING_MS);
  }
  process.stdout.write(formatCliLine('probe-agent', { event: 'hairpin', target, answered }));
  socket.close();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'observer') {
  await observer(args);
} else if (mode === 'probe') {
  await probe(args[0] ?? '[]', Number(args[1]), Number(args[2]), Number(args[3] ?? 0));
} else if (mode === 'hairpin') {
  await hairpin(args[0] ?? '', Number(args[1]));
} else {
  process.stderr.write(
    'usage: probe-agent observer ADDR:PORT... | probe OBS_JSON PORT CPORT LINGER_MS | hairpin ADDR:PORT PORT\n',
  );
  process.exitCode = 2;
}
