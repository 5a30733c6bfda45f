/** A UDP address as seen on the wire: IPv4 dotted quad or IPv6 text, and a port. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** A stable map key for an endpoint (IPv6 addresses contain ':', so the port goes in brackets). */
export function endpointKey(ep: Endpoint): string {
  return `${ep.address}#${ep.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.address === b.address;
}

/**
 * True for loopback addresses (127.0.0.0/8, `::1`, and 127/8 mapped into IPv6). Routers and
 * the kernel drop such sources from the network, so a datagram from one was sent on this
 * machine: a reflection cannot aim at it.
 */
export function isLoopbackAddress(address: string): boolean {
  if (address.startsWith('127.')) return true;
  if (address === '::1') return true;
  return address.length > 11 && address.slice(0, 11).toLowerCase() === '::ffff:127.';
}

/**
 * The address as the peer itself would write it: an IPv4-mapped IPv6 address
 * (`::ffff:1.2.3.4`, what a dual-stack socket reports for IPv4 senders) as plain IPv4;
 * anything else unchanged.
 */
export function unmappedAddress(address: string): string {
  if (
    address.length > 7 &&
    address.slice(0, 7).toLowerCase() === '::ffff:' &&
    address.includes('.')
  ) {
    return address.slice(7);
  }
  return address;
}
