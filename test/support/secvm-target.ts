// A monitored guest for the security-VM channel tests and bench:secvm: a real Debian-kernel
// guest under QEMU (TCG) with RAM in a /dev/shm file, an ext4 data disk it mounts (a small root
// tree: binaries, libraries, configuration, documents) and a user-mode NIC; a testbed CA with
// credentials for the target's QEMU (role qemu, naming the guest), a page server (role
// page-server), the security VM that monitors the guest (secvm-a) and one that monitors another
// guest (secvm-b); in the QEMU, TLS credentials (server side for NBD with an authz list of the
// security VMs whose credentials name the guest; client side for mirrors).
//
// Channels (monitor/channel): local and direct read the RAM file and reach NBD over a unix
// socket (on one machine the two differ only by the security VM's host VM: its namespace, not
// the path its bytes take); remote reaches the page server, NBD and the mirror over TCP with TLS.
// QEMU has one NBD server: nbdTransport() switches it between the unix socket and TLS on TCP.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Channel } from "../../src/monitor/alert.ts";
import {
  type CertificateAuthority,
  type Credential,
  createCertificateAuthority,
  expectClient,
  expectServer,
  issueCredential,
  qemuAuthzIdentities,
  Revocations,
  tlsOptions,
  writeQemuCredsDir,
} from "../../src/monitor/channel/index.ts";
import { type NbdTransport, tlsTransport, unixTransport } from "../../src/monitor/disk/nbd/index.ts";
import { NbdTlsRelay } from "../../src/monitor/disk/nbd/tls-relay.ts";
import {
  addAuthzList,
  addTlsCredsX509,
  buildGuestImage,
  DEFAULT_GUEST_MODULES,
  deviceSockets,
  diskNodeName,
  type QemuDevice,
  QemuProcess,
  SerialConsole,
  startNbdServer,
  stopNbdServer,
} from "../../src/qemu/index.ts";
import { pseudoRandom } from "./bytes.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

export const GUEST_MAC = "52:54:00:5e:c0:01";
export const GUEST_IP = "10.0.2.15";
export const GATEWAY = "10.0.2.2";
export const TLS_SERVER_CREDS = "nc-tls-server";
export const TLS_CLIENT_CREDS = "nc-tls-client";
export const NBD_AUTHZ = "nc-nbd-authz";

/** Files of the data disk: `docs` small documents (1 % of the files changed = docs / 100 or so). */
export function makeTree(root: string, o: { docs: number }): { files: string[] } {
  const files: string[] = [];
  const f = (p: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), data, { mode });
    files.push(`/${p}`);
  };
  const bins = ["sshd", "sudo", "login", "passwd", "su", "mount", "ps", "ls", "netstat", "crond"];
  for (const [i, b] of bins.entries()) f(`bin/${b}`, pseudoRandom(512 * KiB + i * 61 * KiB, 100 + i), 0o755);
  for (let i = 0; i < 8; i++) f(`usr/lib/lib${i}.so.1`, pseudoRandom(1 * MiB + i * 97 * KiB, 200 + i));
  f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  for (let i = 0; i < 40; i++) f(`etc/conf.d/c${i}.conf`, `option${i}=yes\n`);
  for (let i = 0; i < o.docs; i++) f(`home/user/doc${i}.txt`, `document ${i}\n`.repeat(40 + (i % 50)));
  mkdirSync(join(root, "tmp"), { mode: 0o1777 });
  return { files };
}

export interface SecvmTarget {
  readonly guestId: string;
  readonly q: QemuProcess;
  readonly con: SerialConsole;
  readonly stateDir: string;
  readonly diskPath: string;
  readonly diskSize: number;
  readonly diskNode: string;
  readonly files: readonly string[];
  readonly ca: CertificateAuthority;
  readonly creds: {
    readonly qemu: Credential;
    readonly pageServer: Credential;
    /** Monitors this guest; also the mirror receiver's server certificate (IP 127.0.0.1). */
    readonly secvm: Credential;
    /** Monitors another guest only. */
    readonly other: Credential;
  };
  /** Runs a shell command in the guest; throws on a non-zero exit. */
  sh(command: string, timeoutMs?: number): Promise<string>;
  /**
   * Points QEMU's NBD server at the channel's transport and returns how to reach it. Remote
   * goes through the target server's TLS relay (`via` "relay", the default: QEMU's NBD server
   * on its unix socket) or QEMU's own TLS (`via` "qemu": tls-creds and the authz list).
   */
  nbdTransport(channel: Channel, cred?: Credential, via?: "relay" | "qemu"): Promise<NbdTransport>;
  readonly relay: NbdTlsRelay;
  /** Client certificates the relay refuses (rotated out). */
  readonly revocations: Revocations;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export async function startSecvmTarget(o: {
  guestId: string;
  docs: number;
  diskMiB: number;
  memoryMiB?: number;
  log?: (s: string) => void;
}): Promise<SecvmTarget> {
  const stateDir = mkdtempSync(join(tmpdir(), `nc-secvm-${o.guestId}-`));
  const poolDir = mkdtempSync(`/dev/shm/nc-secvm-${o.guestId}-`);
  const diskPath = join(stateDir, "data.raw");
  const diskSize = o.diskMiB * MiB;
  let q: QemuProcess | undefined;
  let con: SerialConsole | undefined;
  const cleanup = async () => {
    con?.close();
    if (q) await q.stop().catch(() => q?.kill());
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(poolDir, { recursive: true, force: true });
  };
  try {
    const ca = await createCertificateAuthority(join(stateDir, "ca"));
    const [qemu, pageServer, secvm, other] = await Promise.all([
      issueCredential(ca, {
        name: `qemu-${o.guestId}`,
        role: "qemu",
        targets: [o.guestId],
        ips: ["127.0.0.1"],
      }),
      issueCredential(ca, { name: "pagesrv-s1", role: "page-server", ips: ["127.0.0.1"] }),
      issueCredential(ca, { name: "secvm-a", role: "security-vm", targets: [o.guestId], ips: ["127.0.0.1"] }),
      issueCredential(ca, {
        name: "secvm-b",
        role: "security-vm",
        targets: ["another-guest"],
        ips: ["127.0.0.1"],
      }),
    ]);
    const tree = join(stateDir, "tree");
    const { files } = makeTree(tree, { docs: o.docs });
    execFileSync("truncate", ["-s", String(diskSize), diskPath]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-L", "data", "-d", tree, diskPath]);
    rmSync(tree, { recursive: true });
    const image = await buildGuestImage({
      modules: [...DEFAULT_GUEST_MODULES, "ext4", "crc32c_generic"],
      log: o.log,
    });
    const devices: QemuDevice[] = [
      { kind: "disk", id: "d0", path: diskPath, format: "raw" },
      { kind: "nic", id: "n0", mac: GUEST_MAC, backend: "user" },
    ];
    const bootId = `${o.guestId}-boot-1`;
    q = await QemuProcess.start({
      stateDir,
      spec: { guestId: o.guestId, memoryMiB: o.memoryMiB ?? 256, poolDir, image, bootId, devices },
    });
    const qp = q;
    con = await SerialConsole.connect(q.paths.serialSocket, { label: o.guestId });
    await con.waitForLine(new RegExp(`NESTCLOUD-READY ${bootId}`), 180_000, { includeHistory: true });
    const c = con;
    const sh = async (command: string, timeoutMs = 60_000) => {
      const r = await c.run(command, timeoutMs);
      if (r.exitCode !== 0) throw new Error(`${command}: exit ${r.exitCode}: ${r.output}`);
      return r.output;
    };
    // The data disk (the one of diskSize bytes) mounted on /mnt; the NIC up.
    const disks = await sh("for b in /sys/block/vd*; do echo DISK $b $(cat $b/size); done");
    const m = [...disks.matchAll(/DISK \/sys\/block\/(vd[a-z]+) (\d+)/g)].find(
      (x) => Number(x[2]) * 512 === diskSize,
    );
    if (!m) throw new Error(`no ${diskSize}-byte disk in the guest: ${disks}`);
    await sh(`mkdir -p /mnt && mount -t ext4 /dev/${m[1]} /mnt`);
    const nets = await sh(
      'for n in /sys/class/net/eth*; do echo "NIC $(basename $n) $(cat $n/address)"; done',
    );
    const nic = new RegExp(`NIC (\\S+) ${GUEST_MAC}`).exec(nets);
    if (!nic) throw new Error(`no NIC ${GUEST_MAC}: ${nets}`);
    await sh(`ip link set ${nic[1]} up; ip addr add ${GUEST_IP}/24 dev ${nic[1]}`);

    // QEMU's side of the remote channel: its certificate (server for NBD, client for mirrors)
    // and the security VMs its NBD server admits.
    await addTlsCredsX509(q.qmp, {
      id: TLS_SERVER_CREDS,
      dir: writeQemuCredsDir(join(stateDir, "qemu-tls-server"), qemu, "server"),
      endpoint: "server",
      verifyPeer: true,
    });
    await addTlsCredsX509(q.qmp, {
      id: TLS_CLIENT_CREDS,
      dir: writeQemuCredsDir(join(stateDir, "qemu-tls-client"), qemu, "client"),
      endpoint: "client",
      verifyPeer: true,
    });
    await addAuthzList(q.qmp, { id: NBD_AUTHZ, identities: qemuAuthzIdentities(o.guestId, [secvm, other]) });

    const nbdSock = deviceSockets(q.spec.runDir, devices).nbd;
    let nbd: { kind: "unix" } | { kind: "tls"; port: number } | null = null;
    const revocations = new Revocations();
    const relay = new NbdTlsRelay({
      upstream: nbdSock,
      ...tlsOptions(qemu),
      authorize: revocations.guard(expectClient("security-vm", o.guestId)),
    });
    const relayPort = await relay.listen("127.0.0.1");
    const nbdTransport = async (
      channel: Channel,
      cred: Credential = secvm,
      via: "relay" | "qemu" = "relay",
    ): Promise<NbdTransport> => {
      const want = channel === "remote" && via === "qemu" ? "tls" : "unix";
      if (nbd?.kind !== want) {
        if (nbd) await stopNbdServer(qp.qmp);
        nbd = null;
        if (want === "unix") {
          await startNbdServer(qp.qmp, { type: "unix", path: nbdSock });
          nbd = { kind: "unix" };
        } else {
          const port = await freePort();
          await startNbdServer(
            qp.qmp,
            { type: "inet", host: "127.0.0.1", port },
            { tlsCreds: TLS_SERVER_CREDS, tlsAuthz: NBD_AUTHZ },
          );
          nbd = { kind: "tls", port };
        }
      }
      const verify = { ...tlsOptions(cred), verifyServer: expectServer("qemu", o.guestId) };
      if (channel === "remote" && via === "relay") return tlsTransport("127.0.0.1", relayPort, verify);
      return nbd.kind === "unix"
        ? unixTransport(nbdSock)
        : tlsTransport("127.0.0.1", nbd.port, {
            ...tlsOptions(cred),
            verifyServer: expectServer("qemu", o.guestId),
          });
    };
    return {
      guestId: o.guestId,
      q: qp,
      con: c,
      stateDir,
      diskPath,
      diskSize,
      diskNode: diskNodeName("d0"),
      files,
      ca,
      creds: { qemu, pageServer, secvm, other },
      sh,
      nbdTransport,
      relay,
      revocations,
      close: async () => {
        await relay.close();
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
