/**
 * What a host-VM agent writes into each of its QEMUs' state files (QemuProcess agent data),
 * so that a successor (the same agent restarted by its supervisor after a crash or a
 * SIGKILL) can adopt them instead of killing them: what the QEMU is (a guest, or the
 * destination of an incoming migration), and for a guest the migration leaving it, if any.
 * The rules for what an adopted QEMU becomes are in hostvm-agent.ts (recover).
 */
import { readFileSync } from "node:fs";
import type { MigrationStatus, QemuProcess } from "../../qemu/index.ts";
import type { GuestConfig, PrepareIncomingRequest, StartOutgoingRequest, Workload } from "../api-types.ts";
import type { ConsoleRecords } from "../console-records.ts";

export interface GuestRole {
  role: "guest";
  guest: GuestConfig & { cpus: number; bootId: string };
  /** Workloads running in the guest. */
  workloads: Workload[];
  /** Workloads to start once the guest is up (asked for at creation, not started yet). */
  bootWorkloads: Workload[];
  /** The guest arrived by an incoming migration (its QEMU was once a destination). */
  arrived: boolean;
  /** The migration leaving this QEMU, until it failed, was rolled back or confirmed. */
  outgoing: StartOutgoingRequest | null;
  /** Powered off hard by the agent (virtual AMT): QEMU stopped, the guest off. */
  heldOff?: boolean;
}

export interface IncomingRole {
  role: "incoming";
  req: PrepareIncomingRequest;
  uri: string | null;
  /** Post-copy: told to start by itself once the load completes. */
  armed: boolean;
  /** Post-copy: bytes of each of the source's serial logs appended here at arming. */
  logOffsets?: Record<string, number>;
}

export type QemuRole = GuestRole | IncomingRole;

/** The recorded role, or null if there is none we understand (the QEMU is then reaped). */
export function parseRole(x: unknown): QemuRole | null {
  if (typeof x !== "object" || x === null) return null;
  const r = x as Partial<GuestRole> & Partial<IncomingRole> & { role?: unknown };
  if (r.role === "guest" && r.guest && typeof r.guest.guestId === "string" && Array.isArray(r.workloads)) {
    return {
      role: "guest",
      guest: r.guest,
      workloads: r.workloads,
      bootWorkloads: Array.isArray(r.bootWorkloads) ? r.bootWorkloads : [],
      arrived: r.arrived === true,
      outgoing: r.outgoing ?? null,
      heldOff: r.heldOff === true,
    };
  }
  if (r.role === "incoming" && r.req && typeof r.req.migrationId === "string") {
    const offsets =
      typeof r.logOffsets === "object" && r.logOffsets !== null
        ? Object.fromEntries(
            Object.entries(r.logOffsets).filter(([, n]) => Number.isSafeInteger(n) && (n as number) >= 0),
          )
        : undefined;
    return {
      role: "incoming",
      req: r.req,
      uri: r.uri ?? null,
      armed: r.armed === true,
      ...(offsets ? { logOffsets: offsets } : {}),
    };
  }
  return null;
}

/** Feeds what the guest printed so far (QEMU's serial log file) into `records`. */
export function replaySerialLog(path: string, records: ConsoleRecords): void {
  let text: string;
  try {
    text = readFileSync(path, "latin1");
  } catch {
    return;
  }
  const now = Date.now();
  const lines = text.split("\n");
  lines.pop(); // an unfinished last line arrives on the console
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escapes are control characters
  for (const l of lines) records.feed(l.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[c78]|\r/g, ""), now);
}

/**
 * Where the outgoing migration of an adopted source QEMU stands. QEMU 7.2's query-migrate
 * reports a QEMU's old *incoming* status once it has been a destination, so for a guest
 * that arrived by migration the run state decides, with the RAM figures (present only
 * while a source migration is active or done) as the tie-breaker. "completed" only ever
 * comes from postmigrate: a source found running (e.g. rolled back just before its agent
 * died) runs the guest and is never reported as completed.
 */
export async function adoptedOutgoingStatus(
  q: QemuProcess,
  role: GuestRole & { outgoing: StartOutgoingRequest },
): Promise<MigrationStatus> {
  const run = (await q.qmp.queryStatus()).status;
  if (run === "postmigrate") return "completed";
  const info = await q.qmp.queryMigrate();
  const opts = role.outgoing.options ?? {};
  if (!role.arrived) {
    const st = info.status ?? "none";
    // Never started (the agent died before its migrate command): nothing to follow.
    if (st === "none") return "cancelled";
    if (st === "completed") return run === "running" ? "failed" : "completed";
    return st;
  }
  if (run === "running") return info.ram ? "active" : "failed";
  if (run === "finish-migrate") return opts.postcopy ? "postcopy-active" : "device";
  if (run === "paused" && opts.pauseBeforeSwitchover) return "pre-switchover";
  return "failed";
}
