/**
 * Thin wrappers over iproute2's `ip`, run without a shell. Deletions tolerate "not there"
 * so teardown can replay a record of what may or may not have been created.
 */
import { execFile } from "node:child_process";

export class IpError extends Error {
  override name = "IpError";
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
    readonly code: number | string | null,
  ) {
    super(`ip ${args.join(" ")} failed: ${stderr.trim() || `exit ${code}`}`);
  }
  /** The kernel refused for lack of privilege (no CAP_NET_ADMIN / CAP_SYS_ADMIN). */
  get denied(): boolean {
    return (
      /Operation not permitted|Permission denied|mount --make-shared/.test(this.stderr) ||
      this.code === "ENOENT"
    );
  }
  get missing(): boolean {
    return /Cannot find device|No such file|does not exist|Cannot open network namespace|not exist/.test(
      this.stderr,
    );
  }
}

export function ip(args: readonly string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", args, { timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as { status?: number }).status ?? null;
        reject(new IpError(args, stderr || err.message, code as number | string | null));
      } else resolve(stdout);
    });
  });
}

/** Runs a deletion; "does not exist" counts as done. */
export async function ipDelete(args: readonly string[]): Promise<void> {
  try {
    await ip(args);
  } catch (e) {
    if (e instanceof IpError && e.missing) return;
    throw e;
  }
}

export async function netnsExists(name: string): Promise<boolean> {
  const out = await ip(["netns", "list"]);
  return out.split("\n").some((l) => l.split(" ")[0] === name);
}

export async function linkExists(name: string, netns: string | null = null): Promise<boolean> {
  try {
    await ip([...(netns ? ["-n", netns] : []), "link", "show", "dev", name]);
    return true;
  } catch (e) {
    if (e instanceof IpError && e.missing) return false;
    throw e;
  }
}

/** Destinations of the root namespace's IPv4 routes ("default", "192.0.2.0/24", ...). */
export async function rootRoutes(): Promise<string[]> {
  const out = await ip(["-j", "-4", "route", "show", "table", "all"]);
  const routes = JSON.parse(out || "[]") as Array<{ dst?: string }>;
  return routes.map((r) => r.dst ?? "").filter((d) => d !== "");
}

export interface IfaceCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** Counters of a link inside a namespace (the `ip -s` view of /sys/class/net/<if>/statistics). */
export async function linkCounters(name: string, netns: string | null): Promise<IfaceCounters> {
  const out = await ip([...(netns ? ["-n", netns] : []), "-j", "-s", "link", "show", "dev", name]);
  const [link] = JSON.parse(out) as Array<{
    stats64?: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number } };
  }>;
  const s = link?.stats64;
  return {
    rxBytes: s?.rx.bytes ?? 0,
    txBytes: s?.tx.bytes ?? 0,
    rxPackets: s?.rx.packets ?? 0,
    txPackets: s?.tx.packets ?? 0,
  };
}
