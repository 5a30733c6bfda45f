/**
 * The lab's address plan. Only the RFC 5737 documentation ranges ever appear inside the
 * namespaces: 203.0.113.0/24 for the rendezvous server and probe observers, 198.51.100.0/24
 * for router uplinks and public hosts, 192.0.2.0/24 cut into one /28 LAN per site.
 */
export const SERVER_ADDRESS = '203.0.113.10';
/** The server's second address, for NAT diagnosis (`--alt-address`); its alternate port is the next one. */
export const SERVER_ALT_ADDRESS = '203.0.113.11';
export const OBSERVER_ADDRESSES = ['203.0.113.20', '203.0.113.21', '203.0.113.22'] as const;
export const DEFAULT_SERVER_PORT = 4000;

/** Site i's uplink (or public host) address. */
export function sitePublicAddress(i: number): string {
  return `198.51.100.${10 + i}`;
}

/** Site i's LAN: 192.0.2.(16i)/28, the router at .1, host k at .(2+k). */
export function siteLan(i: number): { cidr: string; gateway: string; host(k: number): string } {
  const base = 16 * i;
  return {
    cidr: `192.0.2.${base}/28`,
    gateway: `192.0.2.${base + 1}`,
    host: (k) => `192.0.2.${base + 2 + k}`,
  };
}

/**
 * The link between a `double-nat` site's carrier NAT and its home router: a /30 inside
 * 198.51.100.128/26 (the carrier's side .1, the router's .2), clear of every public address.
 */
export function siteCarrierLink(i: number): { carrier: string; router: string } {
  const base = 128 + 4 * i;
  return { carrier: `198.51.100.${base + 1}`, router: `198.51.100.${base + 2}` };
}
