// What a security VM's network monitor needs from the QEMU that runs its target: a copy of
// every frame of one of its NICs, both directions, added and removed at run time.
//
// The recipe (QEMU 7.2, ../shared/notes/security-vms.md): a socket chardev (`chardev-add`:
// unix or TCP, QEMU as the client of the monitor's listener or as a server the monitor
// connects to), then a `filter-mirror` on the NIC's netdev (`object-add`, queue=all,
// outdev=<chardev>). QEMU then writes every frame as a 4-byte big-endian length and the
// Ethernet frame. Teardown is the reverse: `object-del` of the filter (the chardev stays busy
// until then), `chardev-remove`; both tolerate what is already gone.
//
// The trap (checked on QEMU 7.2, see docs/architecture.md): filter-mirror writes with
// qemu_chr_fe_write_all, which retries a full socket every 100 us in QEMU's main loop, holding
// the big lock: a connected peer that stops reading freezes the guest's network and then the
// whole QEMU (QMP too) once the socket's buffer is full. A peer that is not connected costs
// nothing (frames are dropped). So the monitor's receiver must always read, and drop when it
// cannot keep up (monitor/network/receiver.ts).
//
// Filters do not move with a migration: the destination needs its own (add it there, or
// start the destination with a nic-tap device, devices.ts).
import type { QmpClient } from "./qmp.ts";
import { QmpError } from "./qmp.ts";

/** The part of QmpClient these helpers use (a fake can stand in for tests). */
export type MirrorQmp = Pick<QmpClient, "execute">;

/**
 * Where the mirrored frames go. `server: false` (the default): QEMU connects to a listener of
 * the monitor's; with `reconnectSeconds` it retries in the background (also when nothing
 * listens yet, so adding succeeds). `server: true`: QEMU listens (never waits for a client;
 * frames are dropped while none is connected).
 */
export type MirrorEndpoint =
  | { type: "unix"; path: string; server?: boolean; reconnectSeconds?: number }
  | {
      type: "inet";
      host: string;
      port: number;
      server?: boolean;
      reconnectSeconds?: number;
      /**
       * TLS credentials (qemu/block-export.ts addTlsCredsX509, endpoint "client" when QEMU
       * connects out): the stream is encrypted and QEMU proves itself with its certificate;
       * it checks the monitor's certificate names `host`.
       */
      tlsCreds?: string;
    };

export interface NetMirror {
  /** The filter's QOM id (also names the chardev: `<id>-out`). */
  id: string;
  /** The NIC's netdev id (a device list's NIC "x" has netdev "nic-x", devices.ts). */
  netdev: string;
  to: MirrorEndpoint;
}

/** QOM ids: QEMU's id rules (letter first; letters, digits, '-', '.', '_'), kept short. */
export const MIRROR_ID_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;

/** The chardev a mirror writes to. */
export const mirrorChardevId = (id: string) => `${id}-out`;

function chardevBackend(to: MirrorEndpoint): Record<string, unknown> {
  const addr =
    to.type === "unix"
      ? { type: "unix", data: { path: to.path } }
      : { type: "inet", data: { host: to.host, port: String(to.port) } };
  const data: Record<string, unknown> = { addr, server: to.server === true };
  // Nagle off: each frame is its own small write (with TLS, a record), and a mirrored frame
  // waiting for the peer's delayed ACK costs the monitor ~40 ms of detection time.
  if (to.type === "inet") data.nodelay = true;
  if (to.type === "inet" && to.tlsCreds !== undefined) data["tls-creds"] = to.tlsCreds;
  if (to.server) data.wait = false;
  else if (to.reconnectSeconds !== undefined) data.reconnect = to.reconnectSeconds;
  return { type: "socket", data };
}

/**
 * Starts mirroring every frame of `netdev`, both directions, to `to`. Undoes the chardev
 * when the filter cannot be added (no such netdev, id taken).
 */
export async function addNetMirror(qmp: MirrorQmp, m: NetMirror): Promise<void> {
  if (!MIRROR_ID_RE.test(m.id))
    throw new Error(`mirror id ${JSON.stringify(m.id)} must match ${MIRROR_ID_RE}`);
  const chardev = mirrorChardevId(m.id);
  await qmp.execute("chardev-add", { id: chardev, backend: chardevBackend(m.to) });
  try {
    await qmp.execute("object-add", {
      "qom-type": "filter-mirror",
      id: m.id,
      netdev: m.netdev,
      queue: "all",
      outdev: chardev,
    });
  } catch (e) {
    await qmp.execute("chardev-remove", { id: chardev }).catch(() => {});
    throw e;
  }
}

/** "Not there" answers of object-del and chardev-remove (QEMU 7.2's wording and classes). */
function isGone(e: unknown): boolean {
  return e instanceof QmpError && (e.errorClass === "DeviceNotFound" || /not found/i.test(e.desc));
}

/**
 * Stops a mirror: the filter, then its chardev (which closes the monitor's connection).
 * Idempotent: whatever is already gone is skipped. Returns what was removed.
 */
export async function removeNetMirror(
  qmp: MirrorQmp,
  id: string,
): Promise<{ filter: boolean; chardev: boolean }> {
  const removed = { filter: true, chardev: true };
  try {
    await qmp.execute("object-del", { id });
  } catch (e) {
    if (!isGone(e)) throw e;
    removed.filter = false;
  }
  try {
    await qmp.execute("chardev-remove", { id: mirrorChardevId(id) });
  } catch (e) {
    if (!isGone(e)) throw e;
    removed.chardev = false;
  }
  return removed;
}

/** The mirrors (filter-mirror objects) QEMU has now, by id. */
export async function listNetMirrors(qmp: MirrorQmp): Promise<string[]> {
  const objs = await qmp.execute<Array<{ name: string; type: string }>>("qom-list", { path: "/objects" });
  return objs.filter((o) => o.type === "child<filter-mirror>").map((o) => o.name);
}
