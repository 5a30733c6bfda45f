/**
 * Which addresses may stand for a peer (docs/protocol-v2.md, "Candidates"): the one rule the
 * server applies to the candidates it is given and the client to the endpoints it punches.
 * A peer candidate must be a unicast IP literal. Hostnames (`dead.cafe` is valid hex and
 * dots) would make every client look them up; broadcast, multicast and the unspecified
 * address would aim the punch at a whole network, or nowhere.
 */
import { isIP } from 'node:net';

/** The eight 16-bit groups of an IPv6 literal (embedded IPv4 included), or undefined. */
export function ipv6Groups(address: string): number[] | undefined {
  if (isIP(address) !== 6) return undefined;
  let text = address.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = ipv4Octets(last);
    if (v4 === undefined) return undefined;
    const hi = (((v4[0] as number) << 8) | (v4[1] as number)).toString(16);
    const lo = (((v4[2] as number) << 8) | (v4[3] as number)).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16));
  const gap = text.indexOf('::');
  let groups: number[];
  if (gap === -1) groups = parse(text);
  else {
    const head = parse(text.slice(0, gap));
    const rest = parse(text.slice(gap + 2));
    const fill = 8 - head.length - rest.length;
    if (fill < 0) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  }
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)
    ? groups
    : undefined;
}

/** The four octets of an IPv4 dotted quad, or undefined. */
export function ipv4Octets(address: string): number[] | undefined {
  if (isIP(address) !== 4) return undefined;
  return address.split('.').map((o) => Number(o));
}

function unicastV4(octets: readonly number[]): boolean {
  const first = octets[0] as number;
  // 0.0.0.0/8 "this network"; 224/4 multicast; 240/4 reserved, 255.255.255.255 included.
  return first !== 0 && first < 224;
}

/**
 * True when `address` is an IPv4 or IPv6 literal of a single host: not a hostname, not
 * 0.0.0.0/8 or `::`, not multicast (224.0.0.0/4, ff00::/8), not 240.0.0.0/4 (reserved, the
 * limited broadcast 255.255.255.255 among them). IPv4-mapped IPv6 follows the IPv4 rule. A
 * subnet's directed broadcast (e.g. 192.168.1.255) cannot be told apart without its netmask;
 * operating systems refuse to send to it from a socket without SO_BROADCAST, which no
 * HolePunch socket sets.
 */
export function isUnicastAddress(address: string): boolean {
  if (typeof address !== 'string') return false;
  const v4 = ipv4Octets(address);
  if (v4 !== undefined) return unicastV4(v4);
  const g = ipv6Groups(address);
  if (g === undefined) return false;
  if (g.every((x) => x === 0)) return false;
  if (((g[0] as number) & 0xff00) === 0xff00) return false;
  const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
  if (mapped) {
    const hi = g[6] as number;
    const lo = g[7] as number;
    return unicastV4([hi >>> 8, hi & 0xff, lo >>> 8, lo & 0xff]);
  }
  return true;
}

/** A usable peer endpoint: a unicast IP literal (`isUnicastAddress`) and a port 1–65535. */
export function isUnicastEndpoint(ep: {
  readonly address: string;
  readonly port: number;
}): boolean {
  return (
    Number.isInteger(ep.port) && ep.port >= 1 && ep.port <= 65535 && isUnicastAddress(ep.address)
  );
}
