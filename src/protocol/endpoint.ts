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
