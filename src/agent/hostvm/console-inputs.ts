/**
 * The record of the keystrokes a logged serial port's console sessions have had delivered
 * (session id -> highest seq), kept beside the port's log in the guest's folder: the
 * destination of an instant handover reads the same file, a pre-copy fetches it with the logs
 * (incoming.ts). Apart from console.ts so that incoming.ts needs nothing of the sessions.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ConsoleInputs } from "../api-types.ts";
import type { HostVmAgentConfig } from "../config.ts";
import { guestDir } from "./devices.ts";

/** Sessions remembered per serial port (the most recent). */
const KEEP_SESSIONS = 64;

/** Where a port's console sessions record their delivered keystrokes (beside its log). */
export function inputsPath(cfg: HostVmAgentConfig, guestId: string, deviceId: string): string {
  return join(guestDir(cfg, guestId), `${deviceId}.console-inputs.json`);
}

/** The record (empty when there is none or it is unreadable). */
export function readInputs(path: string): ConsoleInputs {
  try {
    const j = JSON.parse(readFileSync(path, "utf8")) as ConsoleInputs;
    return j && typeof j === "object" ? j : {};
  } catch {
    return {};
  }
}

/** Replaces the record (atomically: a reader sees the old one or the new one). */
export function writeInputs(path: string, inputs: ConsoleInputs): void {
  const kept = Object.entries(inputs)
    .sort((a, b) => b[1].at - a[1].at)
    .slice(0, KEEP_SESSIONS);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(Object.fromEntries(kept)), { mode: 0o600 });
  renameSync(tmp, path);
}
