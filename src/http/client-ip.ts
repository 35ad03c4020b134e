import { BlockList, isIP } from 'node:net';

export function isValidCidr(cidr: string): boolean {
  const [address, bits, extra] = cidr.split('/');
  if (extra !== undefined || !address || bits === undefined || !/^\d{1,3}$/.test(bits)) return false;
  const family = isIP(address);
  return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
}

/** Matches a TCP peer address against CIDRs; IPv4-mapped IPv6 (::ffff:1.2.3.4) counts as IPv4. */
export function createCidrMatcher(cidrs: readonly string[]): (address: string | undefined) => boolean {
  const list = new BlockList();
  for (const cidr of cidrs) {
    if (!isValidCidr(cidr)) throw new TypeError(`invalid CIDR "${cidr}"`);
    const [address, bits] = cidr.split('/') as [string, string];
    list.addSubnet(address, Number(bits), isIP(address) === 4 ? 'ipv4' : 'ipv6');
  }
  return (address) => {
    if (!address) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const plain = mapped ? (mapped[1] as string) : address;
    const family = isIP(plain);
    if (family === 0) return false;
    return list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  };
}
