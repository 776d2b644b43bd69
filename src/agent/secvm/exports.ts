/**
 * What a host-VM agent exports of its guests to security VMs of OTHER host VMs of the same
 * server (the direct channel; issue 12). The security VM's own agent asks (POST
 * /v1/secvm-exports, authenticated like every route) naming the security VM (its server, host
 * VM, id and uid); this agent grants that security VM, and nobody else, what its monitors need:
 *
 * - disk: QEMU's NBD server on a unix socket in /run/ncsv/<exportId>/, a folder of mode 0700
 *   owned by the security VM's uid (no other uid, so no other security VM, can even reach the
 *   socket); each round's view (bitmap rotation, fleece, an export under a fresh random name)
 *   is opened here, on the grantee agent's request, since only this agent holds the QMP;
 * - network: a filter-mirror on the NIC's netdev towards the socket the grantee names in ITS
 *   private folder (0700, its uid: only its service listens there); the chardev reconnects, so
 *   a service restarted by its agent is fed again without asking;
 * - memory: the RAM file's path in the server's pool, for the grantee's agent (root on the same
 *   server), which opens it read-only and hands the service a descriptor, exactly as for a
 *   local target: the service itself cannot open any pool file by path (root's, 0600).
 *
 * One security VM per guest, as locally: a guest's QEMU has one NBD server, so a guest that a
 * local security VM watches (or that is exported to another one) is refused (409). Asked again
 * for the same (security VM, guest), the old export is taken down first (the grantee's agent
 * restarted, or started its service again). DELETE takes everything off the target's QEMU.
 *
 * Security VMs of OTHER servers (the remote channel, `channel: "remote"`): the same grant over
 * TCP with TLS (remote.ts): memory from this agent's page server, the disk through an NBD TLS
 * relay in front of QEMU's NBD server (a unix socket in a folder of root's), the mirror from
 * QEMU's chardev as TLS client (a qemu certificate naming the guest) to the security VM's TLS
 * listener; the page server and the relay admit the grantee's certificate alone (its
 * fingerprint comes with the request), and DELETE revokes it here.
 *
 * Pure decisions (who may have what) are in the request's validation and `exportIdOf`; the
 * rest is the QMP and file-system work.
 */
import { createHash } from "node:crypto";
import { chownSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { NbdTlsRelay } from "../../monitor/index.ts";
import { writeQemuCredsDir } from "../../monitor/index.ts";
import {
  addNetMirror,
  addTlsCredsX509,
  type QemuProcess,
  removeNetMirror,
  removeObject,
  startNbdServer,
  stopNbdServer,
} from "../../qemu/index.ts";
import { openRamFile, type RamFile } from "../../vmi/index.ts";
import type { CreateSecVmExportRequest, DiskViewAnswerBody, SecVmExport } from "../api-types.ts";
import type { HostVm } from "../hostvm/state.ts";
import { AgentError, conflict, notFound } from "../http.ts";
import { DiskRounds } from "./disk-rounds.ts";
import { SECVM_RUN_ROOT, secvmErrors } from "./manager.ts";
import { caDirOf, RemoteServing } from "./remote.ts";

/** The export's id: a hash of where the target runs and who is granted it (names its folder). */
export function exportIdOf(
  testbedId: string,
  target: { server: string; hostVm: string; guestId: string },
  grantee: { server: string; hostVm: string; secvmId: string },
): string {
  const key = `${testbedId}/${target.server}/${target.hostVm}/${target.guestId}/${grantee.server}/${grantee.hostVm}/${grantee.secvmId}`;
  return `x${createHash("sha256").update(key).digest("hex").slice(0, 12)}`;
}

class Export {
  readonly dir: string;
  nbdSocket: string | null = null;
  mirror: string | null = null;
  disk: DiskRounds | null = null;
  /** Remote: what serves the grantee over TLS. */
  ram: RamFile | null = null;
  pageServer: { host: string; port: number; size: number } | null = null;
  relay: { relay: NbdTlsRelay; endpoint: { host: string; port: number } } | null = null;
  tlsCreds: string | null = null;

  constructor(
    readonly id: string,
    readonly req: CreateSecVmExportRequest,
    readonly qemu: QemuProcess,
    readonly qemuPid: number,
    /** Whether a running NBD server can only be a predecessor agent's leftover (adopted QEMU). */
    private readonly leftoverNbd: boolean,
    /** The remote channel's servers (null: direct). */
    private readonly remote: RemoteServing | null,
  ) {
    this.dir = join(SECVM_RUN_ROOT, id);
  }

  status(): SecVmExport {
    const g = this.req.grantee;
    return {
      exportId: this.id,
      guestId: this.req.guestId,
      channel: this.req.channel,
      grantee: { secvmId: g.secvmId, server: g.server, hostVm: g.hostVm, uid: g.uid },
      // A remote grantee reads memory from the page server; the path is no use to it.
      ramFile: this.req.memory && !this.remote ? this.qemu.poolFile : null,
      nbdSocket: this.nbdSocket,
      mirror: this.mirror,
      pageServer: this.pageServer,
      relay: this.relay?.endpoint ?? null,
      qemuPid: this.qemuPid,
      running: this.qemu.isRunning && this.qemu.pid === this.qemuPid,
    };
  }

  async make(): Promise<void> {
    const { req, qemu } = this;
    const uid = req.grantee.uid;
    const remote = this.remote;
    const fp = req.grantee.certFingerprint ?? "";
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(SECVM_RUN_ROOT, { recursive: true, mode: 0o711 });
    mkdirSync(this.dir, { mode: 0o700 });
    // Remote: the grantee is on another machine; the folder (NBD socket, credentials) is root's.
    if (!remote) chownSync(this.dir, uid, uid);
    // The target QEMU's certificate (the relay's, and the mirror chardev's as TLS client).
    const qemuCred =
      remote && (req.disk || req.nic)
        ? await remote.issue("qemu", `qemu-${req.guestId}`, [req.guestId], join(this.dir, "tls"))
        : null;
    if (remote && req.memory) {
      this.ram = openRamFile(qemu.poolFile);
      const at = await remote.grantMemory(fp, req.guestId, this.ram.memory, join(this.dir, "tls"));
      this.pageServer = { ...at, size: this.ram.memory.size };
    }
    if (req.disk) {
      this.disk = new DiskRounds(qemu, `disk-${req.disk}`, `sx${this.id}`, join(this.dir, "fleece.qcow2"));
      // What a predecessor agent's export of this grantee left on an adopted QEMU: its bitmaps.
      await this.disk.clear();
      this.nbdSocket = join(this.dir, "nbd.sock");
      const start = () => startNbdServer(qemu.qmp, { type: "unix", path: this.nbdSocket as string });
      try {
        await start();
      } catch (e) {
        if (!/already running/i.test((e as Error).message)) throw e;
        // Nobody of this agent uses it (no local watcher, no export, no disk tap: checked by the
        // caller), so it is a predecessor agent's, left on the adopted QEMU: replaced.
        if (!this.leftoverNbd) {
          this.nbdSocket = null;
          throw secvmErrors.nbdBusy(req.guestId);
        }
        await stopNbdServer(qemu.qmp);
        await start();
      }
      if (remote && qemuCred) this.relay = await remote.openRelay(fp, req.guestId, this.nbdSocket, qemuCred);
      else chownSync(this.nbdSocket, uid, uid);
    }
    const to = req.grantee.mirror;
    if (req.nic && remote && to && qemuCred) {
      const id = `sx-${this.id}`;
      await removeNetMirror(qemu.qmp, id).catch(() => {});
      this.tlsCreds = `sxt-${this.id}`;
      await removeObject(qemu.qmp, this.tlsCreds).catch(() => {});
      await addTlsCredsX509(qemu.qmp, {
        id: this.tlsCreds,
        dir: writeQemuCredsDir(join(this.dir, "qemu-tls"), qemuCred, "client"),
        endpoint: "client",
      });
      await addNetMirror(qemu.qmp, {
        id,
        netdev: `nic-${req.nic}`,
        to: { type: "inet", host: to.host, port: to.port, tlsCreds: this.tlsCreds, reconnectSeconds: 1 },
      });
      this.mirror = id;
    } else if (req.nic && req.grantee.mirrorSocket) {
      const id = `sx-${this.id}`;
      // A predecessor agent's mirror of this export (same id) on an adopted QEMU goes first.
      await removeNetMirror(qemu.qmp, id).catch(() => {});
      await addNetMirror(qemu.qmp, {
        id,
        netdev: `nic-${req.nic}`,
        to: { type: "unix", path: req.grantee.mirrorSocket, reconnectSeconds: 1 },
      });
      this.mirror = id;
    }
  }

  /** Takes the mirror, the views, the bitmaps and the NBD server off the target's QEMU. */
  async unmake(): Promise<void> {
    const q = this.qemu;
    await this.relay?.relay.close();
    this.relay = null;
    if (this.ram) {
      await this.remote?.dropMemory(this.req.grantee.certFingerprint ?? "", this.req.guestId);
      this.ram.close();
    }
    this.ram = null;
    this.pageServer = null;
    if (q.isRunning) {
      if (this.mirror) await removeNetMirror(q.qmp, this.mirror).catch(() => {});
      if (this.tlsCreds) await removeObject(q.qmp, this.tlsCreds).catch(() => {});
      await this.disk?.clear();
      if (this.nbdSocket) await stopNbdServer(q.qmp).catch(() => {});
    }
    this.mirror = null;
    this.tlsCreds = null;
    this.nbdSocket = null;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class SecVmExports {
  readonly exports = new Map<string, Export>();
  /** Which local security VM watches a guest (set by the agent: one watcher per guest). */
  localWatcher: (guestId: string) => string | undefined = () => undefined;

  private remoteServing: RemoteServing | null = null;

  constructor(private readonly host: HostVm) {}

  /** The remote channel's page server, relays and who they admit (remote.ts; made on first use). */
  get remote(): RemoteServing {
    const { cfg } = this.host;
    this.remoteServing ??= new RemoteServing(caDirOf(cfg), cfg.address, `${cfg.server}-${cfg.hostVm}`);
    return this.remoteServing;
  }

  /** The export of a guest to any security VM, if there is one (the manager's check). */
  exportOf(guestId: string): string | undefined {
    for (const e of this.exports.values())
      if (e.req.guestId === guestId) return `${e.req.grantee.hostVm}/${e.req.grantee.secvmId}`;
    return undefined;
  }

  of(id: string): Export {
    const e = this.exports.get(id);
    if (!e) throw notFound(`no security-VM export ${id} on host VM ${this.host.where}`);
    return e;
  }

  list(): SecVmExport[] {
    return [...this.exports.values()].map((e) => e.status());
  }

  async create(req: CreateSecVmExportRequest): Promise<SecVmExport> {
    const { cfg } = this.host;
    const g = req.grantee;
    // Direct means the grantee's server is this one: the RAM file and the sockets are files
    // of this machine. Another server's security VM is the remote channel (TCP with TLS).
    const remote = req.channel === "remote";
    if (!remote && g.server !== cfg.server)
      throw new AgentError(
        400,
        "bad_request",
        `security VM ${g.server}/${g.hostVm}/${g.secvmId} is on another server: channel direct needs the same server`,
      );
    if (remote && g.server === cfg.server)
      throw new AgentError(
        400,
        "bad_request",
        "a security VM of this server uses channel direct, not remote",
      );
    if (remote && !g.certFingerprint)
      throw new AgentError(400, "bad_request", "channel remote needs the grantee's certificate fingerprint");
    if (remote && req.nic && !g.mirror)
      throw new AgentError(400, "bad_request", "a remote NIC export needs the grantee's mirror listener");
    if (g.hostVm === cfg.hostVm)
      throw new AgentError(400, "bad_request", "a security VM of this host VM watches its guests locally");
    if (!remote && req.nic && !req.grantee.mirrorSocket)
      throw new AgentError(400, "bad_request", "a NIC export needs the grantee's mirror socket");
    const id = exportIdOf(cfg.testbedId, { server: cfg.server, hostVm: cfg.hostVm, guestId: req.guestId }, g);
    // Asked again by the same grantee: what it had is taken down and made anew.
    const old = this.exports.get(id);
    if (old) await this.delete(id, false);
    const local = this.localWatcher(req.guestId);
    if (local) throw secvmErrors.watched(req.guestId, local);
    const other = this.exportOf(req.guestId);
    if (other) throw conflict(`guest ${req.guestId} is already exported to security VM ${other}`);
    const guest = this.host.guestOf(req.guestId);
    const q = guest.qemu;
    if (!q?.isRunning || q.pid === undefined || q.pid === null) throw secvmErrors.notRunning(req.guestId);
    const devs = guest.config.devices ?? [];
    if (req.disk && !devs.some((d) => d.kind === "disk" && d.id === req.disk))
      throw secvmErrors.noDevice(req.guestId, "disk", req.disk);
    if (req.nic && !devs.some((d) => d.kind === "nic" && d.id === req.nic))
      throw secvmErrors.noDevice(req.guestId, "NIC", req.nic);
    if (
      req.disk &&
      devs.some((d) => d.kind === "tap" && devs.some((x) => x.kind === "disk" && x.id === d.of))
    )
      throw secvmErrors.nbdBusy(req.guestId);
    // A QEMU this agent adopted from a dead predecessor may carry that agent's export state.
    const adopted = this.host.adopted.some((a) => a.guestId === req.guestId && a.pid === q.pid);
    const e = new Export(id, req, q, q.pid, adopted, remote ? this.remote : null);
    this.exports.set(id, e);
    try {
      await e.make();
    } catch (err) {
      this.exports.delete(id);
      await e.unmake().catch(() => {});
      throw err;
    }
    this.host.log.info({ export: id, guest: req.guestId, grantee: g }, "security-VM export made");
    return e.status();
  }

  /** Opens (or closes) the round's view of the exported disk. */
  async diskView(id: string, open: boolean): Promise<DiskViewAnswerBody> {
    const e = this.of(id);
    if (!e.disk) throw new AgentError(400, "bad_request", `export ${id} has no disk`);
    if (!open) {
      await e.disk.close();
      return { exportName: "", dirtyBitmap: null };
    }
    if (!e.status().running) throw secvmErrors.notRunning(e.req.guestId);
    const v = await e.disk.open();
    return { exportName: v.exportName, dirtyBitmap: v.frozenBitmap };
  }

  /**
   * Takes an export down. `revoke` (its grantee's security VM is deleted): a remote grantee's
   * certificate is refused here from now on, even for another export; not when the same
   * grantee asks again (its service restarted with the same certificate).
   */
  async delete(id: string, revoke = true): Promise<void> {
    const e = this.of(id);
    this.exports.delete(id);
    const fp = e.req.grantee.certFingerprint;
    if (revoke && fp) this.remote.revocations.revoke(fp);
    await e.unmake();
  }

  async shutdown(): Promise<void> {
    for (const id of [...this.exports.keys()]) await this.delete(id, false).catch(() => {});
    await this.remoteServing?.close();
  }
}
