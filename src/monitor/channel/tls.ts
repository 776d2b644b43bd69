// Credentials of the remote channel: a small certificate authority per testbed (or per
// deployment) and leaf certificates for each party, made with the openssl command line.
//
// Why openssl and not an npm package: Debian's openssl is on every machine that runs QEMU here
// (gnutls reads what it writes), it is the reference implementation of the formats, and the
// job is five commands; the npm options (node-forge: pure-JS RSA, slow key generation, several
// past CVEs in its parsers; @peculiar/x509: WebCrypto-based, fine but one more dependency
// tree) would add code to trust for nothing we need. Keys are ECDSA P-256: the handshakes are
// cheap (a fresh remote connection's cost is mostly the handshake).
//
// What a certificate says (subjectAltName URIs, which survive every TLS stack unchanged):
//   urn:nestcloud:role:<role>       security-vm | qemu | page-server
//   urn:nestcloud:target:<guest>    repeated: for a security VM the guests it may monitor; for
//                                   a target's QEMU, the guest it runs
// A security VM's credential names its targets; whoever serves a target's memory, disk or
// traffic checks that the peer's certificate names that target (authorizeTarget). QEMU cannot
// read URIs: its NBD server checks the client's distinguished name (CN=<name>) against an
// authz-list that names the security VMs whose credentials name its guest (qemuAuthzIdentities).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PeerCertificate } from "node:tls";
import { promisify } from "node:util";

const run = promisify(execFile);

export const CREDENTIAL_ROLES = ["security-vm", "qemu", "page-server"] as const;
export type CredentialRole = (typeof CREDENTIAL_ROLES)[number];

/** Names in certificates: no separators an URI, a DN or a QEMU option could misread. */
export const CREDENTIAL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface CertificateAuthority {
  readonly dir: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly certPem: string;
}

/** A party's certificate and key, with the CA that signed it (what TLS options need). */
export interface Credential {
  readonly name: string;
  readonly role: CredentialRole;
  readonly targets: readonly string[];
  readonly certPath: string;
  readonly keyPath: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly caPath: string;
}

function checkName(what: string, n: string): void {
  if (!CREDENTIAL_NAME_RE.test(n))
    throw new RangeError(`${what} ${JSON.stringify(n)} must match ${CREDENTIAL_NAME_RE}`);
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Makes a CA in `dir` (ca-cert.pem, ca-key.pem mode 0600). */
export async function createCertificateAuthority(
  dir: string,
  name = "nestcloud-testbed-ca",
  days = 3650,
): Promise<CertificateAuthority> {
  checkName("CA name", name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certPath = join(dir, "ca-cert.pem");
  const keyPath = join(dir, "ca-key.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-new",
    ...EC,
    "-keyout",
    keyPath,
    "-out",
    certPath,
    "-days",
    String(days),
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  chmodSync(keyPath, 0o600);
  return { dir, certPath, keyPath, certPem: readFileSync(certPath, "utf8") };
}

export interface IssueOptions {
  readonly name: string;
  readonly role: CredentialRole;
  /** Guests this credential is about (see the header). */
  readonly targets?: readonly string[];
  /** Host names and IP addresses a server answers on (QEMU's TLS client checks them). */
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  readonly days?: number;
  /** Folder for <name>-cert.pem and <name>-key.pem (default: the CA's). */
  readonly dir?: string;
}

const IP_RE = /^(\d{1,3}\.){3}\d{1,3}$|^[0-9a-f:]+$/i;

/** Issues a leaf certificate usable as TLS server and client (QEMU checks both usages). */
export async function issueCredential(ca: CertificateAuthority, o: IssueOptions): Promise<Credential> {
  checkName("credential name", o.name);
  const targets = o.targets ?? [];
  for (const t of targets) checkName("target", t);
  for (const d of o.dnsNames ?? []) checkName("DNS name", d);
  for (const ip of o.ips ?? []) if (!IP_RE.test(ip)) throw new RangeError(`bad IP address ${ip}`);
  const dir = o.dir ?? ca.dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const base = join(dir, o.name);
  const keyPath = `${base}-key.pem`;
  const certPath = `${base}-cert.pem`;
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  const san = [
    `URI:urn:nestcloud:role:${o.role}`,
    ...targets.map((t) => `URI:urn:nestcloud:target:${t}`),
    ...(o.dnsNames ?? []).map((d) => `DNS:${d}`),
    ...(o.ips ?? []).map((ip) => `IP:${ip}`),
  ];
  // keyUsage not critical and with keyEncipherment: QEMU (gnutls) refuses a critical one without it.
  writeFileSync(
    ext,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth,clientAuth",
      `subjectAltName=${san.join(",")}`,
      "",
    ].join("\n"),
  );
  await run("openssl", ["req", "-new", ...EC, "-keyout", keyPath, "-out", csr, "-subj", `/CN=${o.name}`]);
  chmodSync(keyPath, 0o600);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.certPath,
    "-CAkey",
    ca.keyPath,
    "-set_serial",
    `0x${randomBytes(12).toString("hex")}`,
    "-days",
    String(o.days ?? 825),
    "-extfile",
    ext,
    "-out",
    certPath,
  ]);
  return {
    name: o.name,
    role: o.role,
    targets: [...targets],
    certPath,
    keyPath,
    certPem: readFileSync(certPath, "utf8"),
    keyPem: readFileSync(keyPath, "utf8"),
    caPem: ca.certPem,
    caPath: ca.certPath,
  };
}

/** What a verified peer certificate says about its holder. */
export interface PeerIdentity {
  readonly name: string;
  readonly role: CredentialRole | null;
  readonly targets: readonly string[];
}

/**
 * Reads a peer's identity from its certificate as Node reports it. Only meaningful once the
 * chain was verified against our CA (socket.authorized): callers check that first.
 */
export function peerIdentity(
  cert: Pick<PeerCertificate, "subject" | "subjectaltname"> | undefined,
): PeerIdentity | null {
  if (!cert || !cert.subject) return null;
  const cn = cert.subject.CN;
  const name = Array.isArray(cn) ? undefined : cn;
  if (typeof name !== "string" || !CREDENTIAL_NAME_RE.test(name)) return null;
  let role: CredentialRole | null = null;
  const targets: string[] = [];
  // Node's format: "URI:urn:...:x, DNS:host, IP Address:1.2.3.4"; names cannot contain ", "
  // (CREDENTIAL_NAME_RE), so a split is exact for what we issue; anything else is ignored.
  for (const part of (cert.subjectaltname ?? "").split(", ")) {
    const m = /^URI:urn:nestcloud:(role|target):(.+)$/.exec(part);
    if (!m || !CREDENTIAL_NAME_RE.test(m[2])) continue;
    if (m[1] === "target") targets.push(m[2]);
    else if ((CREDENTIAL_ROLES as readonly string[]).includes(m[2])) {
      if (role !== null && role !== m[2]) return null; // two roles: not one of ours
      role = m[2] as CredentialRole;
    }
  }
  return { name, role, targets };
}

export type Authorization =
  | { readonly ok: true; readonly peer: PeerIdentity }
  | { readonly ok: false; readonly reason: string };

/** Whether a verified peer of `role` may touch `target` (its certificate names it). */
export function authorizeTarget(
  peer: PeerIdentity | null,
  role: CredentialRole,
  target: string,
): Authorization {
  if (!peer) return { ok: false, reason: "no usable client certificate" };
  if (peer.role !== role)
    return { ok: false, reason: `${peer.name} is not a ${role} (role ${peer.role ?? "none"})` };
  if (!peer.targets.includes(target))
    return { ok: false, reason: `${peer.name}'s credential does not name ${target}` };
  return { ok: true, peer };
}

/** The security VMs a target's QEMU admits: those whose credentials name the target. */
export function qemuAuthzIdentities(
  target: string,
  credentials: readonly Pick<Credential, "name" | "role" | "targets">[],
): string[] {
  return credentials
    .filter((c) => c.role === "security-vm" && c.targets.includes(target))
    .map((c) => `CN=${c.name}`);
}

/**
 * Writes the folder QEMU's tls-creds-x509 object reads (fixed file names: ca-cert.pem, and
 * server-cert.pem/server-key.pem or client-cert.pem/client-key.pem).
 */
export function writeQemuCredsDir(dir: string, cred: Credential, endpoint: "server" | "client"): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "ca-cert.pem"), cred.caPem);
  writeFileSync(join(dir, `${endpoint}-cert.pem`), cred.certPem);
  writeFileSync(join(dir, `${endpoint}-key.pem`), cred.keyPem, { mode: 0o600 });
  return dir;
}

/** Node TLS options of a credential: our CA only, certificates required both ways. */
export function tlsOptions(cred: Credential): {
  ca: string;
  cert: string;
  key: string;
  minVersion: "TLSv1.3";
} {
  return { ca: cred.caPem, cert: cred.certPem, key: cred.keyPem, minVersion: "TLSv1.3" };
}

/** A security VM's client certificate as a page server's client: its name and its targets. */
export function securityVmClient(cert: PeerCertificate): { id: string; guests: readonly string[] } | null {
  const p = peerIdentity(cert);
  return p && p.role === "security-vm" ? { id: p.name, guests: p.targets } : null;
}

/**
 * A check of the server a security VM reaches: its certificate has `role` and, when given,
 * names `target` (a target's QEMU names its guest). A reason to refuse, or null.
 */
export function expectServer(
  role: CredentialRole,
  target?: string,
): (cert: PeerCertificate) => string | null {
  return (cert) => {
    const p = peerIdentity(cert);
    if (!p) return "the server's certificate is not a nestcloud credential";
    if (p.role !== role) return `the server ${p.name} is not a ${role} (role ${p.role ?? "none"})`;
    if (target !== undefined && !p.targets.includes(target))
      return `the server ${p.name} does not serve ${target}`;
    return null;
  };
}

/** A check of the client a monitor accepts: a verified certificate of `role` naming `target`. */
export function expectClient(role: CredentialRole, target: string): (cert: PeerCertificate) => string | null {
  return (cert) => {
    const a = authorizeTarget(peerIdentity(cert), role, target);
    return a.ok ? null : a.reason;
  };
}
