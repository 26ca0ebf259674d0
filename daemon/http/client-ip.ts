import { BlockList, isIP } from 'node:net';

/**
 * Decides which address a request came from. The socket's peer is the truth
 * unless that peer is a trusted proxy named in `server.trusted_proxies`; then the
 * right-most address of X-Forwarded-For that is not itself a trusted proxy is the
 * client. A spoofed header from an untrusted peer changes nothing.
 */
export class ClientIpResolver {
  private readonly trusted = new BlockList();
  private readonly any: boolean;

  constructor(trustedProxies: string[]) {
    this.any = trustedProxies.length > 0;
    for (const entry of trustedProxies) {
      const [addr, bits] = entry.split('/');
      const family = isIP(addr ?? '') === 6 ? 'ipv6' : 'ipv4';
      if (!addr || !isIP(addr)) throw new Error(`server.trusted_proxies: not an address or CIDR: ${entry}`);
      if (bits !== undefined) this.trusted.addSubnet(addr, Number(bits), family);
      else this.trusted.addAddress(addr, family);
    }
  }

  private isTrusted(addr: string): boolean {
    const plain = normalize(addr);
    const family = isIP(plain) === 6 ? 'ipv6' : 'ipv4';
    return isIP(plain) !== 0 && this.trusted.check(plain, family);
  }

  resolve(socketAddress: string | undefined, forwardedFor: string | string[] | undefined): string {
    const peer = normalize(socketAddress ?? '');
    if (!this.any || !this.isTrusted(peer)) return peer || 'unknown';
    const header = Array.isArray(forwardedFor) ? forwardedFor.join(',') : (forwardedFor ?? '');
    const hops = header
      .split(',')
      .map((s) => normalize(s.trim()))
      .filter((s) => isIP(s) !== 0);
    for (let i = hops.length - 1; i >= 0; i--) {
      if (!this.isTrusted(hops[i]!)) return hops[i]!;
    }
    return hops[0] ?? peer;
  }
}

/** `::ffff:127.0.0.1` -> `127.0.0.1`, so one client has one key whatever the socket family. */
function normalize(addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}
