/**
 * cpr-transfer (QEMU >= 10): a live update of a guest into a new QEMU process on the same
 * machine, its RAM handed over as file descriptors rather than copied.
 *
 * The new process starts with two incoming channels: "cpr" (a unix socket over which the
 * source sends its cpr state, including the fds of every RAM block) and "main" (the ordinary
 * migration stream, device state only: RAM that came as an fd is skipped). Until the cpr
 * state has arrived the new process has no QMP (QEMU creates its monitor after it), so it
 * is "prepared" once its cpr socket exists, and its QMP is connected after the source's
 * migrate. The source needs its RAM in shared memory (memory-backend-file share=on, as
 * every nestcloud guest has) and `-machine aux-ram-share=on` (QemuSpec.auxRamShare); it
 * migrates with `mode=cpr-transfer` and both channels. x-ignore-shared stays off on both
 * sides (the stream would differ from what the destination expects).
 */
import { join } from "node:path";

export interface CprPaths {
  /** The migration stream (device state). */
  main: string;
  /** The cpr state (RAM block fds). */
  cpr: string;
}

export function cprPaths(runDir: string): CprPaths {
  return { main: join(runDir, "migrate.sock"), cpr: join(runDir, "cpr.sock") };
}

/** A unix-socket migration channel as QMP's `migrate` and `-incoming` take it. */
export function unixChannel(channelType: "main" | "cpr", path: string) {
  return { "channel-type": channelType, addr: { transport: "socket", type: "unix", path } } as const;
}

/** The new process's `-incoming` arguments: the cpr channel (JSON) and the main one. */
export function cprIncomingArgs(runDir: string): string[] {
  const p = cprPaths(runDir);
  return ["-incoming", JSON.stringify(unixChannel("cpr", p.cpr)), "-incoming", `unix:${p.main}`];
}

/** "unix:/path" -> "/path" (the agents pass channels as URIs). */
export function unixPath(uri: string): string {
  if (!uri.startsWith("unix:") || uri.length <= 5) throw new Error(`not a unix: URI: ${uri}`);
  return uri.slice(5);
}

/** `migrate`'s arguments for a cpr-transfer to a destination listening at these URIs. */
export function cprMigrateArgs(mainUri: string, cprUri: string) {
  return { channels: [unixChannel("main", unixPath(mainUri)), unixChannel("cpr", unixPath(cprUri))] };
}
