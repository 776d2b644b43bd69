/**
 * A guest's own devices on a host-VM agent: checking and completing a requested list (a
 * list QEMU would refuse is a 400 naming the field), the guest's folder in the server's
 * guest store (disk images, serial logs), the QEMU devices and their endpoints, and the
 * monitoring taps QEMU sets up over QMP (a disk's read-only NBD export).
 *
 * A guest has a folder only if it has disks or logged serial ports. It is made when the
 * guest is created (images new, or copied from the host VM's image folder) or when a
 * pre-copy arrives on another server (writable images empty, filled by QEMU's block
 * migration; read-only ones fetched from the source agent), kept across stop and start and
 * across instant handovers (same server, same files), and removed when the guest is
 * deleted, leaves the server, or its incoming is aborted.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  constants,
  existsSync,
  mkdirSync,
  realpathSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { copyFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { promisify } from "node:util";
import { MAX_EXTRA_SERIALS, poolFilePath, type QemuDevice, type QemuProcess } from "../../qemu/index.ts";
import type { Device, DeviceEndpoint, DiskDevice, GuestConfig } from "../api-types.ts";
import type { HostVmAgentConfig } from "../config.ts";
import { AgentError, conflict } from "../http.ts";

const MiB = 1024 * 1024;
/** Disks and NICs share q35's PCI slots 0x08-0x1e (see qemu/devices.ts). */
const MAX_PCI_DEVICES = 23;
/** Bound of qemu-img on an image being imported or created. */
const QEMU_IMG_TIMEOUT_MS = 60_000;

const run = promisify(execFile);
/** qemu-img without a shell; its error says what it found wrong (last line of its stderr). */
async function qemuImg(args: string[]): Promise<string> {
  try {
    return (await run("qemu-img", args, { timeout: QEMU_IMG_TIMEOUT_MS, encoding: "utf8" })).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(err.stderr?.trim().split("\n").at(-1) || err.message);
  }
}

export const badDevice = (field: string, why: string) =>
  new AgentError(400, "bad_request", `${field} ${why}`);

export function storeDir(cfg: HostVmAgentConfig): string {
  return cfg.storeDir ?? join(cfg.poolDir, "guests");
}
export function imageDir(cfg: HostVmAgentConfig): string {
  return cfg.imageDir ?? join(dirname(cfg.qemuDir), "images");
}
export function guestDir(cfg: HostVmAgentConfig, guestId: string): string {
  return join(storeDir(cfg), guestId);
}
function diskPath(cfg: HostVmAgentConfig, guestId: string, d: DiskDevice): string {
  return join(guestDir(cfg, guestId), `${d.id}.${d.format ?? "raw"}`);
}
function serialLogPath(cfg: HostVmAgentConfig, guestId: string, id: string): string {
  return join(guestDir(cfg, guestId), `${id}.serial.log`);
}

export const disksOf = (g: Pick<GuestConfig, "devices">): DiskDevice[] =>
  (g.devices ?? []).filter((d): d is DiskDevice => d.kind === "disk");
const isDisk = (g: GuestConfig, id: string) => disksOf(g).some((d) => d.id === id);
export const hasDisks = (g: GuestConfig): boolean => disksOf(g).length > 0;
export const hasWritableDisks = (g: GuestConfig): boolean => disksOf(g).some((d) => !d.readOnly);
/** Taps that QEMU sets up over QMP (NBD exports of disks), not on its command line. */
export const diskTapsOf = (g: GuestConfig) =>
  (g.devices ?? []).filter((d) => d.kind === "tap" && isDisk(g, d.of)) as Array<Device & { kind: "tap" }>;
/** Whether the guest has a folder in the store (disks or logged serial ports). */
export const hasStore = (g: GuestConfig): boolean =>
  (g.devices ?? []).some((d) => d.kind === "disk" || (d.kind === "serial" && d.log));

/** A stable, locally administered unicast MAC for a guest's NIC (same on every host VM). */
function defaultMac(guestId: string, nicId: string): string {
  const h = createHash("sha256").update(`${guestId}/${nicId}`).digest();
  return `52:54:${[h[0], h[1], h[2], h[3]].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;
}

interface ImageInfo {
  virtualSize: number;
  backing: string | null;
  dataFile: string | null;
}

async function imageInfo(path: string, format: "raw" | "qcow2"): Promise<ImageInfo> {
  const j = JSON.parse(await qemuImg(["info", "--output=json", "-f", format, path])) as {
    "virtual-size": number;
    "backing-filename"?: string;
    "format-specific"?: { data?: { "data-file"?: string } };
  };
  return {
    virtualSize: j["virtual-size"],
    backing: j["backing-filename"] ?? null,
    dataFile: j["format-specific"]?.data?.["data-file"] ?? null,
  };
}

/**
 * Checks a requested device list and completes it (formats, MACs, sizes): what QEMU would
 * refuse is a 400 naming the field (`field`/<index>/...). Image files must be regular
 * files inside the host VM's image folder (after following links), in the declared
 * format, without a backing or external data file (those could name any file here).
 */
export async function completeDevices(
  cfg: HostVmAgentConfig,
  guestId: string,
  devices: readonly Device[],
  field = "body/devices",
): Promise<Device[]> {
  const at = (i: number, f?: string) => `${field}/${i}${f ? `/${f}` : ""}`;
  const index = new Map<string, number>();
  devices.forEach((d, i) => {
    const first = index.get(d.id);
    if (first !== undefined) throw badDevice(at(i, "id"), `must be unique (${d.id} is also ${at(first)})`);
    index.set(d.id, i);
  });
  const pci = devices.filter((d) => d.kind === "disk" || d.kind === "nic").length;
  if (pci > MAX_PCI_DEVICES) throw badDevice(field, `has ${pci} disks and NICs (at most ${MAX_PCI_DEVICES})`);
  const serials = devices.filter((d) => d.kind === "serial").length;
  if (serials > MAX_EXTRA_SERIALS)
    throw badDevice(
      field,
      `has ${serials} serial ports (at most ${MAX_EXTRA_SERIALS}: q35 has 4, one is the agent's)`,
    );
  const out: Device[] = [];
  for (const [i, d] of devices.entries()) {
    if (d.kind === "tap") {
      const target = devices[index.get(d.of) ?? -1];
      if (!target || (target.kind !== "nic" && target.kind !== "disk"))
        throw badDevice(
          at(i, "of"),
          `must name a NIC or a disk of this guest (${d.of} is ${target?.kind ?? "none"})`,
        );
      out.push({ kind: "tap", id: d.id, of: d.of });
    } else if (d.kind === "nic") {
      const mac = d.mac ?? defaultMac(guestId, d.id);
      if (Number.parseInt(mac.slice(0, 2), 16) & 1)
        throw badDevice(at(i, "mac"), "must be a unicast address");
      out.push({ kind: "nic", id: d.id, backend: d.backend ?? "user", mac });
    } else if (d.kind === "serial") {
      out.push(d.log ? { kind: "serial", id: d.id, log: true } : { kind: "serial", id: d.id });
    } else {
      out.push(await completeDisk(cfg, d, at(i)));
    }
  }
  return out;
}

async function completeDisk(cfg: HostVmAgentConfig, d: DiskDevice, at: string): Promise<DiskDevice> {
  const format = d.format ?? "raw";
  const base = { kind: "disk" as const, id: d.id, format, ...(d.readOnly ? { readOnly: true } : {}) };
  if (d.file === undefined) {
    if (d.sizeMiB === undefined) throw badDevice(at, "needs sizeMiB (a new disk) or file (an image to copy)");
    return { ...base, sizeMiB: d.sizeMiB };
  }
  const src = imageSource(cfg, d.file, `${at}/file`);
  let info: ImageInfo;
  try {
    info = await imageInfo(src, format);
  } catch (e) {
    throw badDevice(`${at}/file`, `is not a ${format} image (${(e as Error).message})`);
  }
  if (info.backing || info.dataFile)
    throw badDevice(`${at}/file`, "must not have a backing file or an external data file");
  const own = Math.ceil(info.virtualSize / MiB);
  if (d.sizeMiB !== undefined && d.sizeMiB < own)
    throw badDevice(`${at}/sizeMiB`, `is smaller than the image (${own} MiB)`);
  return { ...base, sizeMiB: d.sizeMiB ?? own, file: d.file };
}

/** The absolute path of an image in the host VM's image folder, or a 400. */
function imageSource(cfg: HostVmAgentConfig, file: string, field: string): string {
  const root = imageDir(cfg);
  let real: string;
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
    real = realpathSync(join(root, file));
  } catch {
    throw badDevice(field, `names no image in the host VM's image folder (${file})`);
  }
  const rel = relative(realRoot, real);
  if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || rel.startsWith(sep))
    throw badDevice(field, "must stay inside the host VM's image folder");
  if (!statSync(real).isFile()) throw badDevice(field, `is not a regular file (${file})`);
  return real;
}

/** The guest's devices as QEMU devices on this host VM (disk taps are set up over QMP). */
export function qemuDevices(cfg: HostVmAgentConfig, g: GuestConfig): QemuDevice[] {
  const out: QemuDevice[] = [];
  for (const d of g.devices ?? []) {
    if (d.kind === "disk") {
      out.push({
        kind: "disk",
        id: d.id,
        path: diskPath(cfg, g.guestId, d),
        format: d.format ?? "raw",
        readOnly: d.readOnly,
      });
    } else if (d.kind === "nic") {
      out.push({ kind: "nic", id: d.id, mac: d.mac!, backend: d.backend ?? "user" });
    } else if (d.kind === "serial") {
      out.push({
        kind: "serial",
        id: d.id,
        logFile: d.log ? serialLogPath(cfg, g.guestId, d.id) : undefined,
      });
    } else if (!isDisk(g, d.of)) {
      out.push({ kind: "nic-tap", id: d.id, nic: d.of });
    }
  }
  return out;
}

/**
 * Makes the guest's folder, or refuses (409) if the guest's RAM is in this server's pool
 * (it runs on another host VM here). A leftover folder (a guest deleted by a dead agent)
 * is replaced.
 */
function makeGuestDir(cfg: HostVmAgentConfig, guestId: string): string {
  if (existsSync(poolFilePath({ poolDir: cfg.poolDir, guestId })))
    throw conflict(`guest ${guestId} runs on this server already (its RAM is in the pool)`);
  const dir = guestDir(cfg, guestId);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

async function createImage(path: string, d: DiskDevice): Promise<void> {
  if ((d.format ?? "raw") === "raw") {
    // Sparse: only what the guest writes takes room.
    writeFileSync(path, "", { mode: 0o600 });
    truncateSync(path, d.sizeMiB! * MiB);
  } else {
    await qemuImg(["create", "-q", "-f", "qcow2", path, `${d.sizeMiB}M`]);
  }
}

/** A new guest: its folder with its disks (new, or copied from the host VM's image folder). */
export async function createGuestStore(cfg: HostVmAgentConfig, g: GuestConfig): Promise<void> {
  if (!hasStore(g)) return;
  makeGuestDir(cfg, g.guestId);
  try {
    for (const d of disksOf(g)) {
      const path = diskPath(cfg, g.guestId, d);
      if (d.file === undefined) {
        await createImage(path, d);
        continue;
      }
      // A copy-on-write clone where the filesystem can, a copy otherwise.
      await copyFile(imageSource(cfg, d.file, "file"), path, constants.COPYFILE_FICLONE);
      if ((d.format ?? "raw") === "raw") {
        if (statSync(path).size < d.sizeMiB! * MiB) truncateSync(path, d.sizeMiB! * MiB);
      } else {
        await qemuImg(["resize", "-q", "-f", "qcow2", path, `${d.sizeMiB}M`]);
      }
    }
  } catch (e) {
    removeGuestStore(cfg, g.guestId);
    throw e;
  }
}

/**
 * The destination of a pre-copy on another server: the guest's folder with writable disks
 * empty, of the same size (QEMU's block migration fills them), and read-only ones fetched
 * (`fetch(diskId, path)`: from the source agent; block migration skips read-only disks).
 */
export async function createIncomingStore(
  cfg: HostVmAgentConfig,
  g: GuestConfig,
  fetch: (diskId: string, path: string) => Promise<void>,
): Promise<void> {
  if (!hasStore(g)) return;
  makeGuestDir(cfg, g.guestId);
  try {
    for (const d of disksOf(g)) {
      const path = diskPath(cfg, g.guestId, d);
      if (d.readOnly) await fetch(d.id, path);
      else await createImage(path, d);
    }
  } catch (e) {
    removeGuestStore(cfg, g.guestId);
    throw e;
  }
}

export function removeGuestStore(cfg: HostVmAgentConfig, guestId: string): void {
  rmSync(guestDir(cfg, guestId), { recursive: true, force: true });
}

/** A disk's image file, for the image route (read-only disks, or any disk of a stopped guest). */
export function diskImagePath(cfg: HostVmAgentConfig, g: GuestConfig, id: string): string | null {
  const d = disksOf(g).find((x) => x.id === id);
  return d ? diskPath(cfg, g.guestId, d) : null;
}

/** A logged serial port's log file. */
export function serialLogOf(cfg: HostVmAgentConfig, g: GuestConfig, id: string): string | null {
  const d = (g.devices ?? []).find((x) => x.kind === "serial" && x.id === id);
  return d && d.kind === "serial" && d.log ? serialLogPath(cfg, g.guestId, id) : null;
}

export function loggedSerialsOf(g: GuestConfig): string[] {
  return (g.devices ?? []).flatMap((d) => (d.kind === "serial" && d.log ? [d.id] : []));
}

/**
 * Sets up the disk taps of a guest in its QEMU (idempotent: exports already there, e.g. in
 * an adopted QEMU, are left alone): QEMU's NBD server on a unix socket in its runtime
 * folder, and one read-only export per tap, named by the tap's id.
 */
export async function openDiskTaps(q: QemuProcess, g: GuestConfig): Promise<void> {
  const taps = diskTapsOf(g);
  if (taps.length === 0) return;
  const sockets = nbdSocket(q);
  const exports = (await q.qmp.execute<Array<{ id: string }>>("query-block-exports")).map((e) => e.id);
  if (exports.length === 0) {
    try {
      await q.qmp.execute("nbd-server-start", { addr: { type: "unix", data: { path: sockets } } });
    } catch (e) {
      // Started already (an adopted QEMU whose exports were removed): fine.
      if (!/already running/i.test((e as Error).message)) throw e;
    }
  }
  for (const t of taps) {
    if (exports.includes(`tap-${t.id}`)) continue;
    await q.qmp.execute("block-export-add", {
      type: "nbd",
      id: `tap-${t.id}`,
      "node-name": `disk-${t.of}`,
      name: t.id,
      writable: false,
    });
  }
}

function nbdSocket(q: QemuProcess): string {
  return join(q.spec.runDir, "nbd.sock");
}

/** Where each device of a guest is reached in its current QEMU (or null fields without one). */
export function deviceEndpoints(
  cfg: HostVmAgentConfig,
  g: GuestConfig,
  q: QemuProcess | null,
): DeviceEndpoint[] {
  const run = q ? q.spec.runDir : null;
  const sock = (name: string) => (run ? join(run, name) : null);
  return (g.devices ?? []).map((d) => {
    const e: DeviceEndpoint = {
      id: d.id,
      kind: d.kind,
      socket: null,
      log: null,
      image: null,
      nbd: null,
      qemuId: null,
    };
    if (d.kind === "disk") {
      e.image = diskPath(cfg, g.guestId, d);
      e.qemuId = `disk-${d.id}`;
    } else if (d.kind === "nic") {
      e.qemuId = `nic-${d.id}`;
      if (d.backend === "socket") e.socket = sock(`n-${d.id}.sock`);
    } else if (d.kind === "serial") {
      e.socket = sock(`s-${d.id}.sock`);
      if (d.log) e.log = serialLogPath(cfg, g.guestId, d.id);
    } else if (isDisk(g, d.of)) {
      e.nbd = q ? `nbd+unix:///${d.id}?socket=${nbdSocket(q)}` : null;
      e.qemuId = `tap-${d.id}`;
    } else {
      e.socket = sock(`t-${d.id}.sock`);
      e.qemuId = `tapf-${d.id}`;
    }
    return e;
  });
}
