import { BlockList, isIP } from 'node:net';

/**
 * Where a webhook may not connect (SSRF policy). A webhook URL is chosen by the
 * user, so without this rule the gateway would POST on the user's behalf to its
 * own loopback, the cloud metadata service (169.254.169.254) or the private
 * network it runs in.
 *
 * IPv4: refused ranges from the IANA special-purpose registry (RFC 6890 and
 * successors), documentation ranges included: they are never a legitimate
 * target, and some networks use them internally.
 *
 * IPv6: an allowlist. Only global unicast (2000::/3) is accepted, minus its
 * special-purpose and documentation blocks; everything outside it (::, ::1,
 * fc00::/7, fe80::/10, ff00::/8, the deprecated IPv4-compatible ::/96,
 * local-use NAT64 64:ff9b:1::/48, ...) is refused. Forms that embed an IPv4
 * address (IPv4-mapped, SIIT, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by
 * the embedded address.
 */

const V4_REFUSED: Array<[string, number, string]> = [
  ['0.0.0.0', 8, 'unspecified / "this network" (RFC 1122)'],
  ['10.0.0.0', 8, 'private (RFC 1918)'],
  ['100.64.0.0', 10, 'carrier-grade NAT (RFC 6598)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local, cloud metadata (RFC 3927)'],
  ['172.16.0.0', 12, 'private (RFC 1918)'],
  ['192.0.0.0', 24, 'IETF protocol assignments, NAT64 discovery (RFC 6890)'],
  ['192.0.2.0', 24, 'documentation TEST-NET-1 (RFC 5737)'],
  ['192.88.99.0', 24, '6to4 relay anycast, deprecated (RFC 7526)'],
  ['192.168.0.0', 16, 'private (RFC 1918)'],
  ['198.18.0.0', 15, 'benchmarking (RFC 2544)'],
  ['198.51.100.0', 24, 'documentation TEST-NET-2 (RFC 5737)'],
  ['203.0.113.0', 24, 'documentation TEST-NET-3 (RFC 5737)'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved, and 255.255.255.255 broadcast'],
];

const V6_REFUSED_INSIDE_GLOBAL: Array<[string, number, string]> = [
  ['2001::', 23, 'IETF protocol assignments: Teredo, benchmarking, ORCHID (RFC 2928, 4380, 5180, 7343)'],
  ['2001:db8::', 32, 'documentation (RFC 3849)'],
  ['3fff::', 20, 'documentation (RFC 9637)'],
];

const v4Refused = new BlockList();
for (const [net, prefix] of V4_REFUSED) v4Refused.addSubnet(net, prefix, 'ipv4');

const v6GlobalUnicast = new BlockList();
v6GlobalUnicast.addSubnet('2000::', 3, 'ipv6');

const v6Refused = new BlockList();
for (const [net, prefix] of V6_REFUSED_INSIDE_GLOBAL) v6Refused.addSubnet(net, prefix, 'ipv6');

/**
 * True when a webhook must not connect to `ip` (an IPv4 or IPv6 literal, without
 * brackets; a zone id like `%eth0` is ignored). Anything that is not an IP
 * address is refused too: the rule fails closed.
 */
export function isForbiddenAddress(ip: string): boolean {
  const address = ip.trim();
  const family = isIP(address);
  if (family === 4) return v4Refused.check(address, 'ipv4');
  if (family !== 6) return true;
  const bytes = parseIpv6(address);
  if (!bytes) return true;
  const embedded = embeddedIpv4(bytes);
  if (embedded !== null) return v4Refused.check(embedded, 'ipv4');
  const canonical = formatIpv6(bytes);
  return !v6GlobalUnicast.check(canonical, 'ipv6') || v6Refused.check(canonical, 'ipv6');
}

/**
 * The first of a name's resolved addresses that may not be connected to, or
 * undefined. Every address is judged, not only the one a client would pick: a
 * socket may fall back to the others (happy eyeballs).
 */
export function firstForbidden<T extends { address: string }>(addresses: T[]): T | undefined {
  return addresses.find((a) => isForbiddenAddress(a.address));
}

/** The IPv4 address an IPv6 address stands for, when it is one of the translation forms; else null. */
function embeddedIpv4(b: Uint8Array): string | null {
  const zero = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0);
  const v4At = (i: number): string => `${b[i]}.${b[i + 1]}.${b[i + 2]}.${b[i + 3]}`;
  // ::ffff:a.b.c.d, IPv4-mapped (RFC 4291 2.5.5.2): the socket connects to a.b.c.d.
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4At(12);
  // ::ffff:0:a.b.c.d, IPv4-translated (SIIT, RFC 6052 / 2765).
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12)) return v4At(12);
  // 64:ff9b::a.b.c.d, the NAT64 well-known prefix (RFC 6052): a NAT64 gateway forwards to a.b.c.d.
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return v4At(12);
  // 2002:AABB:CCDD::/48, 6to4 (RFC 3056): the relay forwards to the embedded address.
  if (b[0] === 0x20 && b[1] === 0x02) return v4At(2);
  return null;
}

/** Parses an IPv6 literal (already checked by net.isIP) into 16 bytes; null when malformed. */
function parseIpv6(text: string): Uint8Array | null {
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // A trailing dotted quad becomes two hex groups.
  const dotted = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (dotted) {
    const q = dotted.slice(2, 6).map(Number);
    if (q.some((n) => n > 255)) return null;
    s = `${dotted[1]}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string | undefined): string[] => (part ? part.split(':') : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return null;
    const n = parseInt(g, 16);
    bytes[2 * i] = n >> 8;
    bytes[2 * i + 1] = n & 0xff;
  }
  return bytes;
}

function formatIpv6(b: Uint8Array): string {
  const out: string[] = [];
  for (let i = 0; i < 16; i += 2) out.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return out.join(':');
}
