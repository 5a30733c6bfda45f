/**
 * Which addresses may stand for a peer (docs/protocol-v2.md, "Candidates"): the one rule the
 * server applies to the candidates it is given and the client to the endpoints it punches.
 * A peer candidate must be a unicast IP literal. Hostnames (`dead.cafe` is valid hex and
 * dots) would make every client look them up; broadcast, multicast and the unspecified
 * address would aim the punch at a whole network, or nowhere.
 */
/**
 * The eight 16-bit groups of an IPv6 literal (embedded IPv4 and a zone id allowed, as Node's
 * `net.isIPv6` allows them), or undefined. Parsed by hand: every candidate of every `host`
 * and `join` goes through here, and `net.isIP`'s regular expression cost more than the rest
 * of the request's checks together.
 */
export function ipv6Groups(address: string): number[] | undefined {
  let text = address;
  const zone = text.indexOf('%');
  if (zone !== -1) {
    if (!ZONE_ID.test(text.slice(zone + 1))) return undefined;
    text = text.slice(0, zone);
  }
  const gap = text.indexOf('::');
  if (gap === -1) {
    const groups = v6Groups(text, true);
    return groups?.length === 8 ? groups : undefined;
  }
  if (text.indexOf('::', gap + 1) !== -1) return undefined;
  const head = gap === 0 ? [] : v6Groups(text.slice(0, gap), false);
  const tail = gap + 2 === text.length ? [] : v6Groups(text.slice(gap + 2), true);
  if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

const ZONE_ID = /^[0-9a-zA-Z\-.:]+$/;

/** `a:b:c`: 1-4 hex digits each; the last may be a dotted quad (two groups) if `v4Tail`. */
function v6Groups(text: string, v4Tail: boolean): number[] | undefined {
  const parts = text.split(':');
  const groups: number[] = [];
  for (const [i, part] of parts.entries()) {
    if (v4Tail && i === parts.length - 1 && part.includes('.')) {
      const v4 = ipv4Octets(part);
      if (v4 === undefined) return undefined;
      groups.push(((v4[0] as number) << 8) | (v4[1] as number));
      groups.push(((v4[2] as number) << 8) | (v4[3] as number));
    } else {
      if (part.length < 1 || part.length > 4) return undefined;
      let g = 0;
      for (let k = 0; k < part.length; k++) {
        const d = hexDigit(part.charCodeAt(k));
        if (d < 0) return undefined;
        g = (g << 4) | d;
      }
      groups.push(g);
    }
  }
  return groups;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 0x20;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}

/** The four octets of an IPv4 dotted quad (decimal, no leading zeros, as `net.isIPv4`), or undefined. */
export function ipv4Octets(address: string): number[] | undefined {
  const parts = address.split('.');
  if (parts.length !== 4) return undefined;
  const octets: number[] = [];
  for (const part of parts) {
    if (part.length < 1 || part.length > 3 || (part.length > 1 && part[0] === '0'))
      return undefined;
    let n = 0;
    for (let k = 0; k < part.length; k++) {
      const c = part.charCodeAt(k) - 48;
      if (c < 0 || c > 9) return undefined;
      n = n * 10 + c;
    }
    if (n > 255) return undefined;
    octets.push(n);
  }
  return octets;
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
