/**
 * The remote channel as the agents provision it (issue 12): a security VM on one server, its
 * target on another, everything over TCP with TLS (docs/architecture.md, "Security VMs: the
 * service").
 *
 * - Credentials: the testbed's CA (`testbedCa`, in the testbed's folder, made by the first
 *   agent that needs it: made aside and renamed in, so two agents racing end with one CA).
 *   Each security VM gets a certificate of its own (role security-vm, naming its targets and
 *   its address); the target's agent a page-server certificate for its page server and, per
 *   export, a qemu certificate naming the guest (presented by the NBD relay, and by QEMU's
 *   mirror chardev as the TLS client).
 * - Who is admitted (`RemoteServing`, the target's side): a valid certificate of our CA is not
 *   enough. The page server and the relay admit the certificate whose fingerprint the grantee's
 *   agent gave with the export, for that export's guest only, and only while the export lasts;
 *   deleting the security VM deletes its exports and revokes the fingerprint here.
 * - The security VM's network (`attachSecVmLink`, the grantee's side): its namespace gets a
 *   veth into the testbed's bridge (the servers' network), an address of the testbed's /24
 *   (.160-.249, as a /32) and a host route to each target server's address, nothing else: it
 *   reaches the servers of its targets only, and they reach its mirror listener.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import type { PeerCertificate } from "node:tls";
import {
  type CertificateAuthority,
  type Credential,
  createCertificateAuthority,
  expectClient,
  fingerprintOf,
  issueCredential,
  listNetns,
  NbdTlsRelay,
  peerIdentity,
  Revocations,
  tlsOptions,
} from "../../monitor/index.ts";
import { bridgeNetnsName } from "../../testbed/index.ts";
import { PageServer, type PhysicalMemory } from "../../vmi/index.ts";
import { AgentError } from "../http.ts";

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(" ")}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

const cas = new Map<string, Promise<CertificateAuthority>>();

/** The testbed's CA in `dir`: read, or made (aside, then renamed in: one CA however many race). */
export function testbedCa(dir: string): Promise<CertificateAuthority> {
  let p = cas.get(dir);
  if (!p) {
    p = (async () => {
      const read = (): CertificateAuthority => ({
        dir,
        certPath: join(dir, "ca-cert.pem"),
        keyPath: join(dir, "ca-key.pem"),
        certPem: readFileSync(join(dir, "ca-cert.pem"), "utf8"),
      });
      if (existsSync(join(dir, "ca-cert.pem"))) return read();
      const aside = `${dir}.${process.pid}.${randomBytes(4).toString("hex")}`;
      mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
      await createCertificateAuthority(aside, "nestcloud-testbed-ca");
      try {
        renameSync(aside, dir);
      } catch {
        // Another agent's CA got there first: that one is the testbed's.
        rmSync(aside, { recursive: true, force: true });
      }
      return read();
    })();
    cas.set(dir, p);
    p.catch(() => cas.delete(dir));
  }
  return p;
}

/** A security VM's remote credential and where its service finds it (root's files, read before the privilege drop). */
export interface SecVmRemote {
  address: string;
  credential: Credential;
  fingerprint: string;
  tls: { ca: string; cert: string; key: string };
}

/** The first address tried for a security VM (then the next ones, wrapping). */
export function secvmOctet(key: string, tries: number): number {
  const h = createHash("sha256").update(key).digest().readUInt32BE(0);
  return 160 + ((h + tries) % 90);
}

/**
 * Joins a security VM's namespace to the testbed's bridge: a veth whose bridge end is named
 * after the address it carries (`ncsv<octet>`: creating it is what reserves the address, so
 * two agents never take the same one), the address as a /32 and no route yet (routeTo adds
 * one per target server). The link goes with the namespace.
 */
export async function attachSecVmLink(testbedId: string, ownAddress: string, netns: string, key: string) {
  const br = bridgeNetnsName(testbedId);
  if (!(await listNetns()).includes(br))
    throw new AgentError(
      409,
      "conflict",
      "the remote channel needs the testbed's network namespaces (a loopback testbed has no bridge)",
    );
  const prefix = ownAddress.split(".").slice(0, 3).join(".");
  for (let i = 0; i < 90; i++) {
    const octet = secvmOctet(key, i);
    const link = `ncsv${octet}`;
    try {
      await ip(["-n", br, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    } catch (e) {
      if (/exists/i.test((e as Error).message)) continue;
      throw e;
    }
    const address = `${prefix}.${octet}`;
    await ip(["-n", br, "link", "set", link, "master", "br0", "up"]);
    await ip(["-n", netns, "addr", "add", `${address}/32`, "dev", "eth0"]);
    await ip(["-n", netns, "link", "set", "eth0", "up"]);
    await ip(["-n", netns, "link", "set", "lo", "up"]);
    return address;
  }
  throw new AgentError(409, "conflict", "no free address for a security VM on the testbed's network");
}

/** A host route from the security VM's namespace to a target server's address. */
export async function routeTo(netns: string, host: string): Promise<void> {
  await ip(["-n", netns, "route", "replace", `${host}/32`, "dev", "eth0"]);
}

/** Issues a security VM's certificate (its targets, its address) into `dir` (root's, 0700). */
export async function issueSecVmCredential(
  caDir: string,
  name: string,
  targets: string[],
  address: string,
  dir: string,
): Promise<SecVmRemote> {
  const ca = await testbedCa(caDir);
  const credential = await issueCredential(ca, { name, role: "security-vm", targets, ips: [address], dir });
  return {
    address,
    credential,
    fingerprint: fingerprintOf(credential.certPem),
    tls: { ca: credential.caPath, cert: credential.certPath, key: credential.keyPath },
  };
}

/**
 * The target's side: one page server per host-VM agent (on its server's address, while any
 * remote export has memory), an NBD TLS relay per export with a disk, and who may use them.
 */
export class RemoteServing {
  readonly revocations = new Revocations();
  private pageServer: PageServer | null = null;
  private pagePort = 0;
  private pageStarting: Promise<void> | null = null;
  /** Grantee certificate fingerprint -> the guests whose memory it may read. */
  private readonly memoryGrants = new Map<string, Map<string, PhysicalMemory>>();

  constructor(
    private readonly caDir: string,
    private readonly address: string,
    private readonly name: string,
  ) {}

  /** A credential of this agent's (page server, or a target QEMU's), in `dir`. */
  async issue(
    role: "page-server" | "qemu",
    name: string,
    targets: string[],
    dir: string,
  ): Promise<Credential> {
    const ca = await testbedCa(this.caDir);
    return issueCredential(ca, { name, role, targets, ips: [this.address], dir });
  }

  /** Who a page-server client is: the grantee of live exports, for their guests only. */
  private identify(cert: PeerCertificate): { id: string; guests: string[] } | null {
    if (this.revocations.isRevoked(cert)) return null;
    const grants = this.memoryGrants.get(cert.fingerprint256?.toUpperCase() ?? "");
    const p = peerIdentity(cert);
    if (!grants || !p || p.role !== "security-vm") return null;
    const guests = [...grants.keys()].filter((g) => p.targets.includes(g));
    return guests.length > 0 ? { id: p.name, guests } : null;
  }

  /** Serves `guestId`'s memory to the certificate `fp` (the page server starts with the first). */
  async grantMemory(fp: string, guestId: string, mem: PhysicalMemory, dir: string) {
    let g = this.memoryGrants.get(fp);
    if (!g) this.memoryGrants.set(fp, (g = new Map()));
    g.set(guestId, mem);
    if (!this.pageServer) {
      this.pageStarting ??= (async () => {
        const cred = await this.issue("page-server", `pagesrv-${this.name}`, [], dir);
        const ps = new PageServer({
          clients: [],
          tls: { ...tlsOptions(cred), identify: (c) => this.identify(c) },
        });
        this.pagePort = (await ps.listen(0, this.address)).port;
        this.pageServer = ps;
      })().finally(() => {
        this.pageStarting = null;
      });
      await this.pageStarting;
    }
    this.pageServer?.addGuest(guestId, mem);
    return { host: this.address, port: this.pagePort };
  }

  /** Stops serving `guestId` to `fp`; the page server closes with its last grant. */
  async dropMemory(fp: string, guestId: string): Promise<void> {
    const g = this.memoryGrants.get(fp);
    g?.delete(guestId);
    if (g?.size === 0) this.memoryGrants.delete(fp);
    if (![...this.memoryGrants.values()].some((x) => x.has(guestId))) this.pageServer?.removeGuest(guestId);
    if (this.memoryGrants.size === 0 && this.pageServer) {
      const ps = this.pageServer;
      this.pageServer = null;
      await ps.close();
    }
  }

  /** An NBD TLS relay for one export: the grantee's certificate only, naming the guest. */
  async openRelay(fp: string, guestId: string, upstream: string, cred: Credential) {
    const named = expectClient("security-vm", guestId);
    const relay = new NbdTlsRelay({
      upstream,
      ...tlsOptions(cred),
      authorize: this.revocations.guard((cert) =>
        cert.fingerprint256?.toUpperCase() === fp
          ? named(cert)
          : "not the certificate this export was granted to",
      ),
    });
    const port = await relay.listen(this.address);
    return { relay, endpoint: { host: this.address, port } };
  }

  async close(): Promise<void> {
    this.memoryGrants.clear();
    const ps = this.pageServer;
    this.pageServer = null;
    await ps?.close();
  }
}

/** The testbed's CA folder (beside its token unless the config names one). */
export function caDirOf(cfg: { caDir?: string; tokenFile: string }): string {
  return cfg.caDir ?? join(dirname(cfg.tokenFile), "ca");
}
