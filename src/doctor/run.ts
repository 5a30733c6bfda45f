/**
 * The shell of the NAT diagnosis: binds the test sockets, pumps `NatDiagnosis`, and runs it
 * once per address family the server has.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { HolePunchError } from '../errors.js';
import { type Endpoint, unmappedAddress } from '../protocol/index.js';
import { DIAGNOSIS_SOCKETS, NatDiagnosis } from './diagnosis.js';
import type { NatReport } from './report.js';

/** A whole diagnosis is given up after this long (it normally takes 1-2 s). */
export const DIAGNOSIS_LIMIT_MS = 8_000;

export interface DiagnoseNatOptions {
  /** The HolePunch server (name or IP) and port. */
  readonly server: { readonly address: string; readonly port: number };
  readonly timeoutMs?: number;
}

export interface NatDiagnosisResult {
  /** The IPv4 diagnosis, or undefined when it could not run (`notes` says why). */
  readonly ipv4: NatReport | undefined;
  readonly ipv6: NatReport | undefined;
  /** Why a family was not tested. */
  readonly notes: readonly string[];
}

/**
 * Diagnoses the NAT in front of this machine against a HolePunch server: mapping and
 * filtering in RFC 4787 terms, port allocation, hairpinning, and a verdict (the library call
 * behind `holepunch-client doctor`). Rejects with `server_unreachable` when the name does not
 * resolve, `socket_error` when no socket can be bound.
 */
export async function diagnoseNat(options: DiagnoseNatOptions): Promise<NatDiagnosisResult> {
  const limit = options.timeoutMs ?? DIAGNOSIS_LIMIT_MS;
  const { address, port } = options.server;
  const notes: string[] = [];
  let v4: string | undefined;
  let v6: string | undefined;
  const literal = isIP(address);
  if (literal === 4) v4 = unmappedAddress(address);
  else if (literal === 6) v6 = address;
  else {
    let found: { address: string; family: number }[];
    try {
      found = await lookup(address, { all: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new HolePunchError(
        'server_unreachable',
        `cannot resolve the server name ${address} (${code}): check the server address`,
        { cause: error },
      );
    }
    v4 = found.find((a) => a.family === 4)?.address;
    v6 = found.find((a) => a.family === 6)?.address;
  }
  if (v4 === undefined) notes.push('IPv4: not tested: the server has no IPv4 address');
  if (v6 === undefined) notes.push('IPv6: not tested: the server has no IPv6 address');
  const [ipv4, ipv6] = await Promise.all([
    v4 === undefined ? undefined : runOnce({ address: v4, port }, 'udp4', limit),
    v6 === undefined ? undefined : runOnce({ address: v6, port }, 'udp6', limit, notes),
  ]);
  return { ipv4, ipv6, notes };
}

async function runOnce(
  server: Endpoint,
  type: 'udp4' | 'udp6',
  limitMs: number,
  notes?: string[],
): Promise<NatReport | undefined> {
  let sockets: dgram.Socket[];
  try {
    sockets = await Promise.all(Array.from({ length: DIAGNOSIS_SOCKETS }, () => bind(type)));
  } catch (error) {
    if (type === 'udp6' && notes !== undefined) {
      // A machine without IPv6: say so rather than fail the IPv4 half.
      notes.push(`IPv6: not tested: no IPv6 socket here (${(error as Error).message})`);
      return undefined;
    }
    throw new HolePunchError('socket_error', `cannot bind a UDP socket: ${String(error)}`, {
      cause: error,
    });
  }
  try {
    const t0 = performance.now();
    const now = () => performance.now() - t0;
    const core = new NatDiagnosis({
      server,
      localPorts: sockets.map((s) => s.address().port),
      random: Math.random,
    });
    return await new Promise<NatReport>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        clearTimeout(timer);
        resolve(core.report());
      };
      const pump = (): void => {
        for (const t of core.poll()) {
          // A send error (say, no route) is a test that gets no answer: nothing to do.
          sockets[t.socket]?.send(t.data, t.to.port, t.to.address, () => {});
        }
        if (core.done || now() >= limitMs) {
          finish();
          return;
        }
        clearTimeout(timer);
        const wait = Math.max(0, Math.min(core.nextDeadline(), limitMs) - now());
        timer = setTimeout(() => {
          core.handleTimeout(now());
          pump();
        }, Math.ceil(wait));
      };
      sockets.forEach((socket, index) => {
        socket.on('message', (data, rinfo) => {
          const from = { address: unmappedAddress(rinfo.address), port: rinfo.port };
          core.handle(now(), index, from, data);
          pump();
        });
      });
      core.start(now());
      pump();
    });
  } finally {
    for (const s of sockets) s.close();
  }
}

function bind(type: 'udp4' | 'udp6'): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
    socket.once('error', reject);
    socket.bind(0, () => {
      socket.off('error', reject);
      // ICMP unreachable for a test datagram shows up as a socket error: not fatal.
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}
