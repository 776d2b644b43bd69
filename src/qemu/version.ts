/**
 * Which QEMU is installed, and so which live-update mechanism a rejuvenation can use:
 * QEMU >= 10 has `cpr-transfer` (memory fds passed over a unix socket); before that (Debian
 * 12's 7.2) a migration to a fresh process with `x-ignore-shared` and RAM in a shared file.
 */
import { execFile } from "node:child_process";

export interface QemuVersion {
  major: number;
  minor: number;
  patch: number;
  /** The first line of `--version`. */
  text: string;
}

export type LiveUpdateMechanism = "x-ignore-shared" | "cpr-transfer";

/** Parses `QEMU emulator version 7.2.22 (Debian ...)`; null for anything else. */
export function parseQemuVersion(out: string): QemuVersion | null {
  const line = out.split("\n")[0] ?? "";
  const m = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(line);
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0), text: line.trim() };
}

export function qemuVersion(binary = "qemu-system-x86_64"): Promise<QemuVersion> {
  return new Promise((resolve, reject) => {
    execFile(binary, ["--version"], { timeout: 10_000 }, (err, stdout) => {
      if (err) return reject(new Error(`${binary} --version: ${err.message}`));
      const v = parseQemuVersion(stdout);
      if (!v)
        return reject(new Error(`${binary} --version: cannot read ${JSON.stringify(stdout.slice(0, 80))}`));
      resolve(v);
    });
  });
}

/** Whether this QEMU offers cpr-transfer (10.0 and later). */
export function hasCprTransfer(v: QemuVersion): boolean {
  return v.major >= 10;
}
