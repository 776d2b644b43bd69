/**
 * Names and addresses of a testbed's pieces (pure). Everything the testbed creates carries
 * its id, so two testbeds (or two engineers' test runs) on one machine never collide, and
 * teardown removes exactly the recorded names.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";

export function newTestbedId(): string {
  // Letters and digits only: the id goes into interface names (15 bytes at most).
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(randomBytes(6), (b) => alphabet[b % alphabet.length]).join("");
}

export const netnsName = (id: string, server: string) => `nc-${id}-${server}`;
/** The namespace holding the bridge; "-bridge" cannot clash with a server name (10 chars max, no dash). */
export const bridgeNetnsName = (id: string) => `nc-${id}-bridge`;
/** Root-namespace end of the veth into the bridge namespace (IFNAMSIZ: 15 bytes). */
export const hostLinkName = (id: string) => `nc${id}h`;
/** Interface name of a server inside its namespace. */
export const SERVER_IFACE = "eth0";
/** Bridge-side end of server i's veth (inside the bridge namespace, so short names suffice). */
export const bridgePortName = (i: number) => `s${i}`;

export const poolRoot = (id: string) => join("/dev/shm", `nestcloud-${id}`);
export const poolDir = (id: string, server: string) => join(poolRoot(id), server);

/** Slice name of a host VM, used for its cgroup folder. */
export const sliceName = (server: string, hostVm: string) => `${server}-${hostVm}`;

export interface Subnet {
  cidr: string;
  /** Address of the root namespace on the bridge (how the CLI and tests reach the agents). */
  hostAddress: string;
  prefix: [number, number, number];
}

export function subnetOf(prefix: [number, number, number]): Subnet {
  const [a, b, c] = prefix;
  return { cidr: `${a}.${b}.${c}.0/24`, hostAddress: `${a}.${b}.${c}.1`, prefix };
}

/** Server i's address: .10, .11, ... on the bridge. */
export function serverAddress(subnet: Subnet, i: number): string {
  const [a, b, c] = subnet.prefix;
  return `${a}.${b}.${c}.${10 + i}`;
}

/** Loopback fallback: 127.0.<k>.<10+i>, k derived from the id so testbeds differ. */
export function loopbackAddress(id: string, i: number): string {
  return `127.0.${1 + (hash(id) % 250)}.${10 + i}`;
}

function hash(s: string): number {
  let h = 2166136261;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return h;
}

/** IPv4 a.b.c.d/len -> [network as uint32, mask as uint32]. */
function parseCidr(cidr: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(cidr);
  if (!m) return null;
  const len = m[5] === undefined ? 32 : Number(m[5]);
  const ip = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return [(ip & mask) >>> 0, mask];
}

export function overlaps(a: string, b: string): boolean {
  const pa = parseCidr(a);
  const pb = parseCidr(b);
  if (!pa || !pb) return false;
  const mask = (pa[1] & pb[1]) >>> 0;
  return (pa[0] & mask) >>> 0 === (pb[0] & mask) >>> 0;
}

/**
 * Picks a /24 in 10.213.0.0/16 that overlaps none of the root namespace's routes (`used`,
 * CIDRs like "192.0.2.0/24" or "default"), starting from a slot derived from the id.
 */
export function pickSubnet(id: string, used: readonly string[]): Subnet {
  const cidrs = used.filter((u) => u !== "default");
  const start = hash(id) % 254;
  for (let k = 0; k < 254; k++) {
    const c = 1 + ((start + k) % 254);
    const cand = `10.213.${c}.0/24`;
    if (!cidrs.some((u) => overlaps(u, cand))) return subnetOf([10, 213, c]);
  }
  throw new Error("no free /24 in 10.213.0.0/16: every one overlaps a route of this machine");
}
