/**
 * The testbed description (YAML): physical servers, the host VMs (slices) on each, and the
 * guests to boot. Every problem is one TestbedSpecError line naming the file and the field,
 * e.g. `small.yaml: servers[1].hostVms[0].memoryMiB: must be >= 256`.
 */
import { type Static, Type } from "typebox";
import Value from "typebox/value";
import { DocumentError, firstSchemaProblem, parseYaml, readBoundedText } from "../schema/index.ts";

export class TestbedSpecError extends Error {
  override name = "TestbedSpecError";
}

/** Names end up in namespace, link, cgroup and socket paths: short and plain. */
export const TESTBED_ID_RE = /^[a-z0-9]{1,8}$/;
export const NODE_NAME_RE = /^[a-z][a-z0-9]{0,9}$/;
export const GUEST_NAME_RE = /^[a-z][a-z0-9-]{0,19}$/;

const Name = (what: string) =>
  Type.String({ pattern: NODE_NAME_RE.source, description: `${what}: [a-z][a-z0-9]{0,9}` });

const WorkloadSchema = Type.Union([
  Type.Object(
    { kind: Type.Literal("verify"), mib: Type.Integer({ minimum: 1 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal("dirty"),
      rateMiBps: Type.Number({ minimum: 0 }),
      workingSetMiB: Type.Integer({ minimum: 1 }),
    },
    { additionalProperties: false },
  ),
]);

export const TestbedSpecSchema = Type.Object(
  {
    /** Testbed id; generated when absent. */
    name: Type.Optional(Type.String({ pattern: TESTBED_ID_RE.source })),
    description: Type.Optional(Type.String()),
    /**
     * visible (default): the testbed tells the controller each host VM's server, as a
     * provider with dedicated hosts would; hidden: it tells nothing, like a public cloud's
     * shared tenancy, and the controller must discover placement (providers/placement).
     */
    placement: Type.Optional(Type.Union([Type.Literal("visible"), Type.Literal("hidden")])),
    network: Type.Optional(
      Type.Object(
        {
          /** A private /24 for the servers' bridge, or auto (picked from 10.213.0.0/16). */
          subnet: Type.Optional(Type.String()),
          /** Force loopback addresses even where namespaces work. */
          loopback: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    servers: Type.Array(
      Type.Object(
        {
          name: Name("server name"),
          hostVms: Type.Array(
            Type.Object(
              {
                name: Name("host VM name"),
                cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
                memoryMiB: Type.Integer({ minimum: 256 }),
              },
              { additionalProperties: false },
            ),
            { minItems: 1 },
          ),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 16 },
    ),
    guests: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ pattern: GUEST_NAME_RE.source }),
            server: Type.String(),
            hostVm: Type.String(),
            memoryMiB: Type.Integer({ minimum: 64 }),
            cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 8 })),
            workloads: Type.Optional(Type.Array(WorkloadSchema)),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);

export type TestbedSpec = Static<typeof TestbedSpecSchema>;
export type ServerSpec = TestbedSpec["servers"][number];
export type HostVmSpec = ServerSpec["hostVms"][number];
export type GuestSpec = NonNullable<TestbedSpec["guests"]>[number];
export type WorkloadSpec = NonNullable<GuestSpec["workloads"]>[number];

export function loadTestbedSpec(file: string): TestbedSpec {
  return parseTestbedSpec(
    specDocument(() => readBoundedText(file, "testbed description")),
    file,
  );
}

function specDocument<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DocumentError) throw new TestbedSpecError(e.message);
    throw e;
  }
}

export function parseTestbedSpec(text: string, file = "<testbed>"): TestbedSpec {
  const raw: unknown = specDocument(() => parseYaml(text, file));
  return checkTestbedSpec(raw, file);
}

/** Validates a parsed document (schema, then cross references). */
export function checkTestbedSpec(raw: unknown, file = "<testbed>"): TestbedSpec {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TestbedSpecError(`${file}: a testbed is a YAML mapping (servers, guests)`);
  }
  if (!Value.Check(TestbedSpecSchema, raw)) {
    throw new TestbedSpecError(`${file}: ${firstSchemaProblem(TestbedSpecSchema, raw)}`);
  }
  const spec = raw as TestbedSpec;
  const fail = (field: string, msg: string): never => {
    throw new TestbedSpecError(`${file}: ${field}: ${msg}`);
  };
  const servers = new Map<string, Set<string>>();
  spec.servers.forEach((s, i) => {
    if (servers.has(s.name)) fail(`servers[${i}].name`, `duplicate server ${s.name}`);
    const hvs = new Set<string>();
    s.hostVms.forEach((h, j) => {
      if (hvs.has(h.name))
        fail(`servers[${i}].hostVms[${j}].name`, `duplicate host VM ${h.name} on ${s.name}`);
      hvs.add(h.name);
    });
    servers.set(s.name, hvs);
  });
  const guests = new Set<string>();
  const load = new Map<string, number>();
  (spec.guests ?? []).forEach((g, i) => {
    if (guests.has(g.name)) fail(`guests[${i}].name`, `duplicate guest ${g.name}`);
    guests.add(g.name);
    const hvs = servers.get(g.server);
    if (!hvs) fail(`guests[${i}].server`, `no server named ${g.server}`);
    if (!hvs!.has(g.hostVm)) fail(`guests[${i}].hostVm`, `no host VM ${g.hostVm} on server ${g.server}`);
    const key = `${g.server}/${g.hostVm}`;
    const used = (load.get(key) ?? 0) + g.memoryMiB;
    const cap = spec.servers
      .find((s) => s.name === g.server)!
      .hostVms.find((h) => h.name === g.hostVm)!.memoryMiB;
    if (used > cap)
      fail(`guests[${i}].memoryMiB`, `host VM ${key} has ${cap} MiB, its guests need ${used} MiB`);
    load.set(key, used);
    for (const [k, w] of (g.workloads ?? []).entries()) {
      const need = w.kind === "verify" ? w.mib : w.workingSetMiB;
      if (need * 2 > g.memoryMiB) {
        fail(
          `guests[${i}].workloads[${k}]`,
          `needs ${need} MiB, more than half of the guest's ${g.memoryMiB} MiB`,
        );
      }
    }
  });
  if (spec.network?.subnet !== undefined && spec.network.subnet !== "auto") {
    if (!parseSubnet24(spec.network.subnet)) {
      fail(
        "network.subnet",
        `expected a private a.b.c.0/24 (10/8, 172.16/12 or 192.168/16), got ${spec.network.subnet}`,
      );
    }
  }
  return spec;
}

/** "10.1.2.0/24" -> [10, 1, 2] when it is a private /24, else null. */
export function parseSubnet24(cidr: string): [number, number, number] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/.exec(cidr);
  if (!m) return null;
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (a > 255 || b > 255 || c > 255) return null;
  const privateNet = a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
  return privateNet ? [a, b, c] : null;
}
