/** Start-up configuration of the agents (a JSON file, usually written by the testbed). */
import { readFileSync } from "node:fs";
import { type Static, Type } from "typebox";
import Value from "typebox/value";
import { firstSchemaProblem } from "../schema/index.ts";
import { NODE_NAME_RE } from "../testbed/index.ts";

const Name = Type.String({ pattern: NODE_NAME_RE.source });
const Address = Type.String({ pattern: "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" });
const Path = Type.String({ pattern: "^/" });

export const ServerAgentConfigSchema = Type.Object(
  {
    role: Type.Literal("server"),
    testbedId: Type.String(),
    server: Name,
    address: Address,
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    poolDir: Path,
    tokenFile: Path,
    readyFile: Path,
    /** The server's interface inside its namespace; null when it has none of its own. */
    iface: Type.Union([Type.String(), Type.Null()]),
    hostVms: Type.Array(
      Type.Object({
        name: Name,
        memoryMiB: Type.Integer({ minimum: 1 }),
        cpus: Type.Integer({ minimum: 1 }),
      }),
    ),
  },
  { additionalProperties: false },
);
export type ServerAgentConfig = Static<typeof ServerAgentConfigSchema>;

export const HostVmAgentConfigSchema = Type.Object(
  {
    role: Type.Literal("hostvm"),
    testbedId: Type.String(),
    server: Name,
    hostVm: Name,
    address: Address,
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    poolDir: Path,
    /** Where this agent's QEMUs keep their runtime folders (and where orphans are reaped from). */
    qemuDir: Path,
    /**
     * The server's guest store: each guest's disk images and serial logs, in
     * <storeDir>/<guestId>/. Shared by the host VMs of one server, like the memory pool (an
     * instant handover keeps using the same files). Default <poolDir>/guests.
     */
    storeDir: Type.Optional(Path),
    /**
     * This host VM's own image folder: the only place a disk's initial content (`file`)
     * may come from. Default <parent of qemuDir>/images.
     */
    imageDir: Type.Optional(Path),
    tokenFile: Path,
    readyFile: Path,
    /**
     * The CA of the security VMs' remote channel (issue 12), shared by the agents of a
     * deployment. Default <folder of tokenFile>/ca: a testbed's, made by the first agent
     * that needs it.
     */
    caDir: Type.Optional(Path),
    serverAgentUrl: Type.String(),
    memoryMiB: Type.Integer({ minimum: 1 }),
    cpus: Type.Integer({ minimum: 1 }),
    image: Type.Object({ kernel: Path, initrd: Path, append: Type.Optional(Type.String()) }),
    qemu: Type.Optional(
      Type.Object({
        binary: Type.Optional(Type.String()),
        tcgTbSizeMiB: Type.Optional(Type.Integer({ minimum: 1 })),
      }),
    ),
  },
  { additionalProperties: false },
);
export type HostVmAgentConfig = Static<typeof HostVmAgentConfigSchema>;

export type AgentConfig = ServerAgentConfig | HostVmAgentConfig;

export function loadAgentConfig(file: string): AgentConfig {
  const raw = JSON.parse(readFileSync(file, "utf8")) as { role?: unknown };
  if (raw.role !== "server" && raw.role !== "hostvm")
    throw new Error(`${file}: role: must be one of server, hostvm`);
  const schema = raw.role === "server" ? ServerAgentConfigSchema : HostVmAgentConfigSchema;
  if (!Value.Check(schema, raw)) throw new Error(`${file}: ${firstSchemaProblem(schema, raw)}`);
  return raw as AgentConfig;
}
