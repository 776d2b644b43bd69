// What a security VM's disk monitor needs from the QEMU that runs its target: QEMU's NBD
// server, read-only NBD exports of block nodes, dirty bitmaps that make every check after the
// first incremental, and fleecing (a point-in-time view of a drive the guest keeps writing).
//
// Disks started from a device list have the block node "disk-<id>" (devices.ts). Recipes,
// checked on QEMU 7.2 (../shared/notes/security-vms.md):
// - an *enabled* bitmap cannot be exported read-only: in one transaction the current bitmap
//   is disabled (frozen) and a fresh one added, the frozen one is exported (its map is the NBD
//   metadata context qemu:dirty-bitmap:<name>) and removed afterwards;
// - fleecing: a qcow2 overlay whose backing is the drive's node, and a backup job with
//   sync=none into it (copy-before-write: the guest's writes first save the old blocks into
//   the overlay), started in the same transaction as the bitmap rotation, so the frozen bitmap
//   and the fleece show the same instant. The overlay is exported; teardown removes the
//   export, cancels the job, deletes the node and the file.
import { rmSync } from "node:fs";
import { execFileText } from "./exec.ts";
import type { QmpClient } from "./qmp.ts";

/** The part of QmpClient these helpers use (a fake can stand in for tests). */
export type BlockQmp = Pick<QmpClient, "execute" | "waitForEvent">;

export type NbdServerAddress = { type: "unix"; path: string } | { type: "inet"; host: string; port: number };

function qmpAddress(a: NbdServerAddress): Record<string, unknown> {
  return a.type === "unix"
    ? { type: "unix", data: { path: a.path } }
    : { type: "inet", data: { host: a.host, port: String(a.port) } };
}

/**
 * TLS credentials QEMU reads from `dir` (ca-cert.pem and <endpoint>-cert.pem/-key.pem), for
 * its NBD server (endpoint "server", verifyPeer: clients need a certificate of the CA) or a
 * socket chardev that connects out (endpoint "client", e.g. a network mirror).
 */
export async function addTlsCredsX509(
  qmp: Pick<QmpClient, "execute">,
  c: { id: string; dir: string; endpoint: "server" | "client"; verifyPeer?: boolean },
): Promise<void> {
  await qmp.execute("object-add", {
    "qom-type": "tls-creds-x509",
    id: c.id,
    dir: c.dir,
    endpoint: c.endpoint,
    "verify-peer": c.verifyPeer ?? true,
  });
}

/**
 * Who may use a TLS server of QEMU's: an authz-list admitting exactly these distinguished
 * names of verified client certificates (e.g. "CN=secvm-a"), everyone else denied.
 */
export async function addAuthzList(
  qmp: Pick<QmpClient, "execute">,
  a: { id: string; identities: readonly string[] },
): Promise<void> {
  await qmp.execute("object-add", {
    "qom-type": "authz-list",
    id: a.id,
    policy: "deny",
    rules: a.identities.map((match) => ({ match, policy: "allow", format: "exact" })),
  });
}

/** Removes an object (credentials, authz); what is already gone is fine. */
export async function removeObject(qmp: Pick<QmpClient, "execute">, id: string): Promise<void> {
  await qmp.execute("object-del", { id }).catch((e: Error) => {
    if (!/not found/i.test(e.message)) throw e;
  });
}

/**
 * Starts QEMU's NBD server (one per QEMU). `alreadyRunningOk`: a running server is fine.
 * `tlsCreds` (addTlsCredsX509, endpoint server): clients must STARTTLS; `tlsAuthz` (addAuthzList)
 * restricts them to named certificates.
 */
export async function startNbdServer(
  qmp: BlockQmp,
  addr: NbdServerAddress,
  opts: { alreadyRunningOk?: boolean; maxConnections?: number; tlsCreds?: string; tlsAuthz?: string } = {},
): Promise<void> {
  const args: Record<string, unknown> = { addr: qmpAddress(addr) };
  if (opts.maxConnections !== undefined) args["max-connections"] = opts.maxConnections;
  if (opts.tlsCreds !== undefined) args["tls-creds"] = opts.tlsCreds;
  if (opts.tlsAuthz !== undefined) args["tls-authz"] = opts.tlsAuthz;
  try {
    await qmp.execute("nbd-server-start", args);
  } catch (e) {
    if (!(opts.alreadyRunningOk && /already running/i.test((e as Error).message))) throw e;
  }
}

export async function stopNbdServer(qmp: BlockQmp): Promise<void> {
  await qmp.execute("nbd-server-stop");
}

export interface ReadOnlyExport {
  /** The export's QEMU id (block-export-del takes it). */
  id: string;
  /** The block node exported. */
  node: string;
  /** The NBD export name clients ask for (default: the id). */
  name?: string;
  /** Dirty bitmaps (disabled ones) reachable from the node, offered as qemu:dirty-bitmap:<name>. */
  bitmaps?: readonly string[];
}

export async function addReadOnlyExport(qmp: BlockQmp, e: ReadOnlyExport): Promise<void> {
  const args: Record<string, unknown> = {
    type: "nbd",
    id: e.id,
    "node-name": e.node,
    name: e.name ?? e.id,
    writable: false,
  };
  if (e.bitmaps && e.bitmaps.length > 0) args.bitmaps = [...e.bitmaps];
  await qmp.execute("block-export-add", args);
}

export interface BlockExportInfo {
  id: string;
  "node-name": string;
  type: string;
  "shutting-down": boolean;
}

export function listExports(qmp: BlockQmp): Promise<BlockExportInfo[]> {
  return qmp.execute<BlockExportInfo[]>("query-block-exports");
}

/**
 * Removes an export and waits until QEMU has let go of it (BLOCK_EXPORT_DELETED): only then
 * can its node be deleted. "hard" (default) drops connected clients; "safe" refuses while
 * any is connected.
 */
export async function removeExport(
  qmp: BlockQmp,
  id: string,
  opts: { mode?: "safe" | "hard"; timeoutMs?: number } = {},
): Promise<void> {
  const deleted = qmp.waitForEvent(
    "BLOCK_EXPORT_DELETED",
    (e) => e.data?.id === id,
    opts.timeoutMs ?? 10_000,
  );
  deleted.catch(() => {});
  await qmp.execute("block-export-del", { id, mode: opts.mode ?? "hard" });
  await deleted;
}

// ---- dirty bitmaps -----------------------------------------------------------------------

export interface DirtyBitmapInfo {
  /** Absent for QEMU's own anonymous bitmaps (a migration's or a block job's). */
  name?: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  /** Dirty bytes. */
  count: number;
}

interface NamedBlockNode {
  "node-name": string;
  image?: { "virtual-size": number };
  "dirty-bitmaps"?: DirtyBitmapInfo[];
}

async function namedNode(qmp: BlockQmp, node: string): Promise<NamedBlockNode> {
  const nodes = await qmp.execute<NamedBlockNode[]>("query-named-block-nodes", { flat: true });
  const n = nodes.find((x) => x["node-name"] === node);
  if (!n) throw new Error(`QEMU has no block node ${node}`);
  return n;
}

/** The node's virtual size in bytes (what a fleece overlay must match). */
export async function nodeSize(qmp: BlockQmp, node: string): Promise<number> {
  const size = (await namedNode(qmp, node)).image?.["virtual-size"];
  if (typeof size !== "number") throw new Error(`block node ${node} reports no virtual size`);
  return size;
}

export async function listDirtyBitmaps(qmp: BlockQmp, node: string): Promise<DirtyBitmapInfo[]> {
  return (await namedNode(qmp, node))["dirty-bitmaps"] ?? [];
}

/** Starts tracking writes to `node` (granularity in bytes, a power of 2; QEMU's default 64 KiB). */
export async function addDirtyBitmap(
  qmp: BlockQmp,
  node: string,
  name: string,
  opts: { granularity?: number } = {},
): Promise<void> {
  const args: Record<string, unknown> = { node, name };
  if (opts.granularity !== undefined) args.granularity = opts.granularity;
  await qmp.execute("block-dirty-bitmap-add", args);
}

export async function removeDirtyBitmap(qmp: BlockQmp, node: string, name: string): Promise<void> {
  await qmp.execute("block-dirty-bitmap-remove", { node, name });
}

/** Transaction actions that freeze `freeze` (if any) and start `start` at the same instant. */
function rotationActions(
  node: string,
  r: BitmapRotation,
  granularity?: number,
): Array<Record<string, unknown>> {
  const add: Record<string, unknown> = { node, name: r.start };
  if (granularity !== undefined) add.granularity = granularity;
  return [
    ...(r.freeze ? [{ type: "block-dirty-bitmap-disable", data: { node, name: r.freeze } }] : []),
    { type: "block-dirty-bitmap-add", data: add },
  ];
}

export interface BitmapRotation {
  /** The bitmap recording until now: disabled, so that it can be exported and read. */
  freeze?: string;
  /** The fresh bitmap that records from this instant on. */
  start: string;
}

/** In one transaction: disables `freeze` and adds `start` (no write falls between the two). */
export async function rotateDirtyBitmap(
  qmp: BlockQmp,
  node: string,
  r: BitmapRotation,
  opts: { granularity?: number } = {},
): Promise<void> {
  await qmp.execute("transaction", { actions: rotationActions(node, r, opts.granularity) });
}

// ---- fleecing ----------------------------------------------------------------------------

export interface FleeceOptions {
  /** The drive's block node (e.g. "disk-d0"). */
  node: string;
  /** The qcow2 overlay to create (absolute; removed by stopFleece). */
  file: string;
  /** Node name of the overlay, also the backup job's id. Default "fleece-<node>". */
  fleeceNode?: string;
  /** A bitmap rotation to make in the same transaction (the fleece's instant). */
  rotate?: BitmapRotation;
  granularity?: number;
  /** qemu-img (default from PATH). */
  qemuImg?: string;
}

export interface Fleece {
  /** The drive's node. */
  source: string;
  /** The point-in-time node: export this one. */
  node: string;
  jobId: string;
  file: string;
}

/** Creates the overlay, adds it with the drive as backing, starts the sync=none backup job. */
export async function startFleece(qmp: BlockQmp, o: FleeceOptions): Promise<Fleece> {
  const fleeceNode = o.fleeceNode ?? `fleece-${o.node}`;
  const size = await nodeSize(qmp, o.node);
  await execFileText(o.qemuImg ?? "qemu-img", ["create", "-q", "-f", "qcow2", o.file, String(size)], {
    timeoutMs: 60_000,
  });
  let added = false;
  try {
    await qmp.execute("blockdev-add", {
      driver: "qcow2",
      "node-name": fleeceNode,
      file: { driver: "file", filename: o.file },
      backing: o.node,
    });
    added = true;
    await qmp.execute("transaction", {
      actions: [
        ...(o.rotate ? rotationActions(o.node, o.rotate, o.granularity) : []),
        {
          type: "blockdev-backup",
          data: { device: o.node, target: fleeceNode, sync: "none", "job-id": fleeceNode },
        },
      ],
    });
  } catch (e) {
    if (added) await qmp.execute("blockdev-del", { "node-name": fleeceNode }).catch(() => {});
    rmSync(o.file, { force: true });
    throw e;
  }
  return { source: o.node, node: fleeceNode, jobId: fleeceNode, file: o.file };
}

/**
 * Ends a fleece: removes exports of its node, cancels the backup job (waiting for it to end),
 * deletes the node and the overlay file. Safe to call when parts are already gone.
 */
export async function stopFleece(qmp: BlockQmp, f: Fleece, opts: { timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  for (const e of await listExports(qmp))
    if (e["node-name"] === f.node) await removeExport(qmp, e.id, { timeoutMs });
  const jobs = await qmp.execute<Array<{ device: string }>>("query-block-jobs");
  if (jobs.some((j) => j.device === f.jobId)) {
    const ended = qmp.waitForEvent(
      "JOB_STATUS_CHANGE",
      (e) => e.data?.id === f.jobId && e.data?.status === "null",
      timeoutMs,
    );
    ended.catch(() => {});
    await qmp.execute("block-job-cancel", { device: f.jobId, force: true });
    await ended;
  }
  const nodes = await qmp.execute<NamedBlockNode[]>("query-named-block-nodes", { flat: true });
  if (nodes.some((n) => n["node-name"] === f.node))
    await qmp.execute("blockdev-del", { "node-name": f.node });
  rmSync(f.file, { force: true });
}

// ---- a monitor's view of a disk ----------------------------------------------------------

export interface DiskViewOptions {
  /** The drive's block node. */
  node: string;
  /** Export id and NBD export name. */
  exportId: string;
  /** Read through a fleece (point in time) rather than the live drive. Needs `fleeceFile`. */
  fleeceFile?: string;
  /** Rotate bitmaps at the view's instant; the frozen one (if any) is exported and removed on close. */
  rotate?: BitmapRotation;
  granularity?: number;
}

export interface DiskView {
  exportName: string;
  /** The node the export reads (the fleece's, or the drive's). */
  node: string;
  fleece: Fleece | null;
  /** Exported as qemu:dirty-bitmap:<name>: the writes since the previous view. */
  frozenBitmap: string | null;
  /** Removes the export, the fleece and the frozen bitmap; the fresh one keeps recording. */
  close(): Promise<void>;
}

/**
 * One check's view of a drive: the bitmap rotation and (optionally) a fleece at one instant,
 * exported read-only with the frozen bitmap. The NBD server must be running.
 */
export async function openDiskView(qmp: BlockQmp, o: DiskViewOptions): Promise<DiskView> {
  let fleece: Fleece | null = null;
  if (o.fleeceFile) {
    fleece = await startFleece(qmp, {
      node: o.node,
      file: o.fleeceFile,
      rotate: o.rotate,
      granularity: o.granularity,
    });
  } else if (o.rotate) {
    await rotateDirtyBitmap(qmp, o.node, o.rotate, { granularity: o.granularity });
  }
  const frozenBitmap = o.rotate?.freeze ?? null;
  const node = fleece?.node ?? o.node;
  const dropFrozen = async () => {
    if (frozenBitmap) await removeDirtyBitmap(qmp, o.node, frozenBitmap);
  };
  try {
    await addReadOnlyExport(qmp, { id: o.exportId, node, bitmaps: frozenBitmap ? [frozenBitmap] : [] });
  } catch (e) {
    if (fleece) await stopFleece(qmp, fleece).catch(() => {});
    await dropFrozen().catch(() => {});
    throw e;
  }
  let closing: Promise<void> | null = null;
  return {
    exportName: o.exportId,
    node,
    fleece,
    frozenBitmap,
    close: () =>
      (closing ??= (async () => {
        if ((await listExports(qmp)).some((e) => e.id === o.exportId)) await removeExport(qmp, o.exportId);
        if (fleece) await stopFleece(qmp, fleece);
        await dropFrozen();
      })()),
  };
}
