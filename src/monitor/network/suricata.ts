// Suricata for one network monitor: its own configuration (written here, no system file
// used), started inside the monitor's namespace on its TAP device (AF_PACKET, live), stopped by
// pid. Its alerts go to EVE JSON (eve.ts tails them); its own log is JSON too, read here to
// know when capture runs and how many rules loaded or were refused.
//
// The configuration bounds what Suricata may do and hold: tenants' rules may not run Lua or
// write datasets, memory caps are small (one guest's traffic), checksums are not checked
// (a guest's offloaded checksums are not filled in yet when QEMU mirrors the frame).

import type { ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { running, spawnInNetns, stopChild } from "./netns.ts";

export interface SuricataOptions {
  /** Folder for its configuration and logs (made if missing). */
  dir: string;
  netns: string;
  iface: string;
  /** Rule files, absolute paths: nestcloud's defaults and the tenant's. */
  ruleFiles: readonly string[];
  /** The guest's networks as Suricata's HOME_NET (default: the private ranges). */
  homeNet?: string;
  /** EVE stats records every this many seconds (capture drops; default 2). */
  statsIntervalSeconds?: number;
  binary?: string;
  /** Bound for "Engine started" (default 60 s: rules compile slowly under load). */
  startTimeoutMs?: number;
}

export interface RuleLoad {
  files: number;
  loaded: number;
  failed: number;
  /** Suricata's first error messages (rule parse errors name the rule), bounded. */
  errors: string[];
}

const yamlString = (s: string) => JSON.stringify(s);

/** Suricata's YAML for one monitor (pure). */
export function suricataConfig(o: SuricataOptions): string {
  const home = o.homeNet ?? "[10.0.0.0/8,172.16.0.0/12,192.168.0.0/16]";
  return `%YAML 1.1
---
# Written by nestcloud's network monitor (src/monitor/network/suricata.ts) for one guest.
vars:
  address-groups:
    HOME_NET: ${yamlString(home)}
    EXTERNAL_NET: "!$HOME_NET"
    HTTP_SERVERS: "$HOME_NET"
    SMTP_SERVERS: "$HOME_NET"
    SQL_SERVERS: "$HOME_NET"
    DNS_SERVERS: "$HOME_NET"
    TELNET_SERVERS: "$HOME_NET"
    AIM_SERVERS: "$EXTERNAL_NET"
    DC_SERVERS: "$HOME_NET"
    DNP3_SERVER: "$HOME_NET"
    DNP3_CLIENT: "$HOME_NET"
    MODBUS_CLIENT: "$HOME_NET"
    MODBUS_SERVER: "$HOME_NET"
    ENIP_CLIENT: "$HOME_NET"
    ENIP_SERVER: "$HOME_NET"
  port-groups:
    HTTP_PORTS: "80"
    SHELLCODE_PORTS: "!80"
    ORACLE_PORTS: 1521
    SSH_PORTS: 22
    DNP3_PORTS: 20000
    MODBUS_PORTS: 502
    FILE_DATA_PORTS: "[$HTTP_PORTS,110,143]"
    FTP_PORTS: 21
    GENEVE_PORTS: 6081
    VXLAN_PORTS: 4789
    TEREDO_PORTS: 3544
default-log-dir: ${yamlString(o.dir)}
stats:
  enabled: yes
  interval: ${o.statsIntervalSeconds ?? 2}
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - alert:
            payload: no
            packet: no
            metadata: no
        - stats:
            totals: yes
            threads: no
            deltas: no
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: no
    - file:
        enabled: yes
        level: info
        filename: suricata.log
        type: json
af-packet:
  - interface: ${yamlString(o.iface)}
    cluster-id: 99
    cluster-type: cluster_flow
    defrag: yes
    use-mmap: yes
    tpacket-v3: no
    checksum-checks: no
max-pending-packets: 1024
flow:
  memcap: 32mb
stream:
  memcap: 32mb
  checksum-validation: no
  reassembly:
    memcap: 64mb
defrag:
  memcap: 16mb
host:
  memcap: 16mb
security:
  limit-noproc: true
  lua:
    allow-rules: false
datasets:
  rules:
    allow-write: false
    allow-absolute-filenames: false
default-rule-path: ${yamlString(o.dir)}
rule-files:
${o.ruleFiles.map((f) => `  - ${yamlString(f)}`).join("\n")}
classification-file: /etc/suricata/classification.config
reference-config-file: /etc/suricata/reference.config
`;
}

/** Suricata's JSON log: records of interest, from what was read (pure). */
export function scanSuricataLog(
  text: string,
  into: { started: boolean; rules: RuleLoad | null; errors: string[] },
) {
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    const r = rec as { log_level?: unknown; engine?: { message?: unknown } };
    const msg = typeof r.engine?.message === "string" ? r.engine.message : "";
    if (r.log_level === "Error" && into.errors.length < 10) into.errors.push(msg.slice(0, 500));
    const m = /(\d+) rule files processed\. (\d+) rules successfully loaded, (\d+) rules failed/.exec(msg);
    if (m) into.rules = { files: Number(m[1]), loaded: Number(m[2]), failed: Number(m[3]), errors: [] };
    if (/Engine started/.test(msg)) into.started = true;
  }
}

export class SuricataProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly dir: string,
    readonly rules: RuleLoad,
  ) {}

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return running(this.child);
  }

  get eveFile(): string {
    return join(this.dir, "eve.json");
  }

  /** Starts Suricata on `iface` in `netns`; resolves once capture runs ("Engine started"). */
  static async start(o: SuricataOptions): Promise<SuricataProcess> {
    mkdirSync(o.dir, { recursive: true });
    const config = join(o.dir, "suricata.yaml");
    writeFileSync(config, suricataConfig(o));
    const logFile = join(o.dir, "suricata.log");
    writeFileSync(logFile, "");
    const child = spawnInNetns(
      o.netns,
      [
        o.binary ?? "suricata",
        "-c",
        config,
        `--af-packet=${o.iface}`,
        "-k",
        "none",
        "--runmode",
        "single",
        "-l",
        o.dir,
        "--pidfile",
        join(o.dir, "suricata.pid"),
      ],
      ["ignore", "ignore", "pipe"],
    );
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString("utf8")).slice(-2000);
    });
    const seen = { started: false, rules: null as RuleLoad | null, errors: [] as string[] };
    const deadline = Date.now() + (o.startTimeoutMs ?? 60_000);
    let offset = 0;
    let partial = "";
    const fd = openSync(logFile, "r");
    try {
      const buf = Buffer.alloc(64 * 1024);
      while (!seen.started) {
        if (!running(child))
          throw new Error(
            `suricata exited (${child.exitCode ?? child.signalCode}) before capture started: ${[...seen.errors, stderr.trim()].filter(Boolean).join("; ")}`,
          );
        if (Date.now() > deadline)
          throw new Error(`suricata did not start capturing within ${o.startTimeoutMs ?? 60_000} ms`);
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n > 0) {
          offset += n;
          const text = partial + buf.subarray(0, n).toString("utf8");
          const cut = text.lastIndexOf("\n");
          partial = text.slice(cut + 1).slice(-64 * 1024);
          scanSuricataLog(text.slice(0, cut + 1), seen);
        } else await new Promise((r) => setTimeout(r, 25));
      }
    } catch (e) {
      await stopChild(child, 2000);
      throw e;
    } finally {
      closeSync(fd);
    }
    const rules = seen.rules ?? { files: 0, loaded: 0, failed: 0, errors: [] };
    rules.errors = seen.errors;
    return new SuricataProcess(child, o.dir, rules);
  }

  /** Asks Suricata to reopen its log files (after the EVE file was renamed). */
  reopenLogs(): void {
    if (this.alive) this.child.kill("SIGHUP");
  }

  /** SIGTERM (it flushes and exits), SIGKILL after `termMs`. */
  stop(termMs = 10_000): Promise<void> {
    return stopChild(this.child, termMs);
  }
}
