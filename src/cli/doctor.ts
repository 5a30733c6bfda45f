// `holepunch-client doctor --server HOST:PORT [--json]`: what the NAT in front of this machine
// does, like `tailscale netcheck`. One JSON object with --json (docs/client.md).
import { parseArgs } from 'node:util';
import { diagnoseNat, type NatDiagnosisResult, type NatReport } from '../doctor/index.js';
import { HolePunchError } from '../errors.js';
import { formatCliLine } from './lines.js';

export const DOCTOR_USAGE = `Usage: holepunch-client doctor [--server HOST:PORT] [--json]

Diagnoses the NAT in front of this machine against a HolePunch server, for IPv4
and IPv6: public address, mapping and filtering behaviour (RFC 4787), how ports
are allocated, hairpinning, and what that means for direct connections. A server
as the README starts it (holepunch-server 4000 y: alternate port 4001) allows
every test but telling endpoint-independent from address-dependent behaviour,
which needs a server started with --host and --alt-address too; the doctor says
which tests it could not run.

Options:
  --server HOST:PORT     the server (default 127.0.0.1:4000)
  --timeout MS           give up after MS (default 8000)
  --json                 one JSON object on stdout
  -h, --help             show this help

Exit status: 0 diagnosed, 1 the server did not answer, 2 bad usage.
`;

/** The one JSON object `doctor --json` prints. */
export interface DoctorJson {
  readonly server: string;
  /** The IPv4 findings (IPv6 when the server has only IPv6); null when not tested. */
  readonly mapping: NatReport['mapping'];
  readonly filtering: NatReport['filtering'];
  readonly ports: NatReport['ports'];
  readonly hairpin: NatReport['hairpin'];
  readonly publicAddresses: readonly string[];
  readonly verdict: string;
  readonly untested: readonly string[];
  readonly ipv4: NatReport | null;
  readonly ipv6: NatReport | null;
  readonly notes: readonly string[];
}

export function doctorJson(server: string, result: NatDiagnosisResult): DoctorJson {
  const main = result.ipv4 ?? result.ipv6;
  return {
    server,
    mapping: main?.mapping ?? null,
    filtering: main?.filtering ?? null,
    ports: main?.ports ?? null,
    hairpin: main?.hairpin ?? null,
    publicAddresses: [
      ...(result.ipv4?.publicAddresses ?? []),
      ...(result.ipv6?.publicAddresses ?? []),
    ],
    verdict: main?.verdict ?? 'nothing could be tested',
    untested: main?.untested ?? [],
    ipv4: result.ipv4 ?? null,
    ipv6: result.ipv6 ?? null,
    notes: result.notes,
  };
}

function describe(family: string, r: NatReport): string[] {
  if (!r.reachable) return [`${family}: ${r.verdict}`];
  const yesNo = (b: boolean | null) => (b === null ? 'not tested' : b ? 'yes' : 'no');
  return [
    `${family}: public address ${r.publicAddresses.join(', ')}`,
    `  mapping:      ${r.mapping ?? 'not tested'}`,
    `  filtering:    ${r.filtering ?? 'not tested'}`,
    `  ports:        ${r.ports ?? 'not tested'}`,
    `  hairpinning:  ${yesNo(r.hairpin)}`,
    ...r.untested.map((u) => `  not tested: ${u}`),
  ];
}

/** Runs the doctor command; resolves to the exit status. */
export async function runDoctor(argv: readonly string[]): Promise<number> {
  let values: { server?: string; timeout?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        server: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`holepunch-client doctor: ${(error as Error).message}\n\n${DOCTOR_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(DOCTOR_USAGE);
    return 0;
  }
  const serverText = values.server ?? '127.0.0.1:4000';
  const colon = serverText.lastIndexOf(':');
  const host = serverText.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(serverText.slice(colon + 1));
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`holepunch-client doctor: --server must be HOST:PORT\n\n${DOCTOR_USAGE}`);
    return 2;
  }
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1)) {
    process.stderr.write(`holepunch-client doctor: --timeout must be a positive integer\n`);
    return 2;
  }
  let result: NatDiagnosisResult;
  try {
    result = await diagnoseNat({
      server: { address: host, port },
      ...(timeout === undefined ? {} : { timeoutMs: timeout }),
    });
  } catch (error) {
    const e =
      error instanceof HolePunchError ? error : new HolePunchError('socket_error', String(error));
    if (values.json) {
      process.stdout.write(
        formatCliLine('doctor', { server: serverText, error: e.code, message: e.message }),
      );
    } else {
      process.stdout.write(`doctor failed (${e.code}): ${e.message}\n`);
    }
    return 1;
  }
  const json = doctorJson(serverText, result);
  if (values.json) {
    process.stdout.write(formatCliLine('doctor', json));
  } else {
    const lines = [`NAT diagnosis against ${serverText}`];
    if (result.ipv4) lines.push(...describe('IPv4', result.ipv4));
    if (result.ipv6) lines.push(...describe('IPv6', result.ipv6));
    lines.push(...result.notes, `verdict: ${json.verdict}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  const reachable = (result.ipv4 ?? result.ipv6)?.reachable === true;
  return reachable ? 0 : 1;
}
