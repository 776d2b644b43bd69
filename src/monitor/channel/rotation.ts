// Rotating the remote channel's credentials. A new certificate for the same party (same name,
// role and targets, a new key and serial) is issued by the CA; the party picks it up without a
// monitoring gap (make before break: a new connection with the new certificate is up before
// the old one is closed: MemoryMonitor.reopen, MirrorReceiver.setCredentials, and the disk
// monitor's next round's transport); then the old certificate is revoked, and every server
// that checks peers (page server, NBD relay, mirror receiver) refuses it from the next
// handshake on. Revocation is by the certificate's SHA-256 fingerprint: the CA still vouches
// for the old certificate until it expires, so the list is what ends it. (QEMU's own TLS
// NBD server checks the client's DN only: a rotated credential there needs a new name in its
// authz list, or a CRL file in its creds folder; the relay path, which the security VMs use,
// checks fingerprints.)
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import type { Credential } from "./tls.ts";

/** A certificate's SHA-256 fingerprint as Node prints it (AB:CD:...). */
export function fingerprintOf(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

const FP_RE = /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/;

/** Fingerprints no longer accepted. */
export class Revocations {
  private readonly fps = new Set<string>();

  /** Revokes a credential (or a fingerprint). */
  revoke(c: Pick<Credential, "certPem"> | string): string {
    const fp = typeof c === "string" ? c.toUpperCase() : fingerprintOf(c.certPem);
    if (!FP_RE.test(fp)) throw new RangeError(`not a SHA-256 fingerprint: ${fp}`);
    this.fps.add(fp);
    return fp;
  }

  /** Replaces the list with a file's (one fingerprint a line; # comments); throws on a bad line. */
  load(path: string): number {
    const next = new Set<string>();
    for (const raw of readFileSync(path, "utf8").split("\n")) {
      const l = raw.replace(/#.*/, "").trim().toUpperCase();
      if (!l) continue;
      if (!FP_RE.test(l)) throw new RangeError(`${path}: not a SHA-256 fingerprint: ${l.slice(0, 120)}`);
      next.add(l);
    }
    this.fps.clear();
    for (const f of next) this.fps.add(f);
    return next.size;
  }

  get size(): number {
    return this.fps.size;
  }

  isRevoked(cert: Pick<PeerCertificate, "fingerprint256"> | undefined): boolean {
    return !!cert?.fingerprint256 && this.fps.has(cert.fingerprint256.toUpperCase());
  }

  /** A peer check (expectClient, a receiver's authorize) that also refuses revoked certificates. */
  guard(check: (cert: PeerCertificate) => string | null): (cert: PeerCertificate) => string | null {
    return (cert) => (this.isRevoked(cert) ? `certificate ${cert.fingerprint256} is revoked` : check(cert));
  }

  /** A page server's `identify` that refuses revoked certificates. */
  guardIdentify<T>(identify: (cert: PeerCertificate) => T | null): (cert: PeerCertificate) => T | null {
    return (cert) => (this.isRevoked(cert) ? null : identify(cert));
  }
}
