/**
 * Registers `nestcloud up` and the commands that talk to a running controller's API:
 * servers, hostvms, vms, plans, token, migrations. Registering loads nothing but commander:
 * each action imports its implementation when it runs (controller.ts for `up`, client.ts
 * for the others), so that `--help`, `--version` and the API commands start at once.
 */
import type { Command } from "commander";
import { intOption, UsageError } from "./usage.ts";

const DEFAULT_DATA_DIR = ".nestcloud";
const load = () => import("./client.ts");

export function registerController(program: Command): void {
  program
    .command("up")
    .description("start the controller and its dashboard (default: a simulated cloud)")
    .option("--provider <name>", "sim or testbed", "sim")
    .option("--db <url>", "sqlite:<file> or postgres://... (default: <data-dir>/nestcloud.db)")
    .option("--port <n>", "HTTP port", "8080")
    .option("--host <addr>", "listen address", "127.0.0.1")
    .option("--data-dir <dir>", "where the store and the admin token live", DEFAULT_DATA_DIR)
    .option("--speed <n>", "simulated seconds per second (sim provider)", "60")
    .option("--guests <n>", "guest VMs in the simulated cloud (first start only)")
    .option("--testbed <id|folder>", "the testbed to run on (testbed provider): its id or its state folder")
    .option("--testbed-root <dir>", "where testbed state folders live (as `testbed up --root`)")
    .option("--interval <s>", "seconds between planning rounds (default 300 sim, 30 testbed)")
    .option(
      "--policy-param <name=value>",
      "a parameter of the nestcloud policy, e.g. overloadUtilization=0.8 (repeatable)",
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .action(async (o) => (await import("./controller.ts")).up(o));

  const client = (cmd: Command) =>
    cmd
      .option("--url <url>", "controller URL (default: $NESTCLOUD_URL or the data dir's)")
      .option("--token <token>", "bearer token (default: $NESTCLOUD_TOKEN or the data dir's admin token)")
      .option("--data-dir <dir>", "data dir of a local controller", DEFAULT_DATA_DIR)
      .option("-o, --output <format>", "table or json", "table");

  client(program.command("servers").description("physical servers and the host VMs on them")).action(
    async (o) => {
      const { api, show } = await load();
      await show(o, await api(o, "GET", "/api/servers"), [
        "id",
        "cores",
        "memoryMiB",
        "hostVmSlots",
        "hostVms",
      ]);
    },
  );

  const hostvms = program.command("hostvms").description("rented host VMs");
  client(hostvms.command("list", { isDefault: true })).action(async (o) => {
    const { api, show } = await load();
    await show(o, await api(o, "GET", "/api/hostvms"), [
      "id",
      "type",
      "server",
      "state",
      "guests",
      "memoryUsedMiB",
      "cpu",
    ]);
  });
  client(hostvms.command("acquire").requiredOption("--type <type>").option("--server <id>")).action(
    async (o) => {
      const { api, show } = await load();
      await show(
        o,
        [await api(o, "POST", "/api/hostvms", { type: o.type, ...(o.server ? { server: o.server } : {}) })],
        ["plan"],
      );
    },
  );
  client(hostvms.command("release").argument("<id>")).action(async (id, o) => {
    const { api, show } = await load();
    await show(o, [await api(o, "DELETE", `/api/hostvms/${encodeURIComponent(id)}`)], ["plan"]);
  });

  const vms = program.command("vms").description("guest VMs");
  client(vms.command("list", { isDefault: true })).action(async (o) => {
    const { api, show } = await load();
    await show(o, await api(o, "GET", "/api/vms"), [
      "id",
      "tenant",
      "hostVm",
      "server",
      "powerState",
      "memoryMiB",
      "cpu",
    ]);
  });
  client(
    vms
      .command("create")
      .argument("<id>")
      .requiredOption("--mips <n>")
      .requiredOption("--memory <MiB>")
      .option("--vcpus <n>")
      .option("--tenant <tenant>"),
  ).action(async (id, o) => {
    const { api, show } = await load();
    const body = {
      id,
      mipsPerVcpu: Number(o.mips),
      memoryMiB: Number(o.memory),
      ...(o.vcpus ? { vcpus: Number(o.vcpus) } : {}),
      ...(o.tenant ? { tenant: o.tenant } : {}),
    };
    await show(o, [await api(o, "POST", "/api/vms", body)], ["id", "tenant", "hostVm", "server"]);
  });
  for (const verb of ["start", "stop"] as const) {
    client(vms.command(verb).argument("<id>")).action(async (id, o) => {
      const { api, show } = await load();
      await show(
        o,
        [await api(o, "POST", `/api/vms/${encodeURIComponent(id)}/${verb}`)],
        ["id", "powerState"],
      );
    });
  }
  client(vms.command("delete").argument("<id>")).action(async (id, o) => {
    const { api } = await load();
    await api(o, "DELETE", `/api/vms/${encodeURIComponent(id)}`);
    process.stdout.write(`deleted ${id}\n`);
  });
  client(
    vms
      .command("migrate")
      .argument("<id>")
      .option("--to <hostVm>", "destination host VM (default: the best one, same server first)")
      .option("--mechanism <m>", "auto, instant, precopy or postcopy", "auto")
      .option("--no-wait", "return once started"),
  ).action(async (id, o) => {
    const { api, show, watchMigration } = await load();
    const started = (await api(o, "POST", `/api/vms/${encodeURIComponent(id)}/migrate`, {
      ...(o.to ? { to: o.to } : {}),
      mechanism: o.mechanism,
    })) as { plan: number };
    if (!o.wait) return show(o, [started], ["plan", "guest", "from", "to"]);
    await watchMigration(o, id, started.plan);
  });

  const plans = program.command("plans").description("action plans");
  client(plans.command("list", { isDefault: true }).option("--status <s>")).action(async (o) => {
    const { api, show } = await load();
    const rows = (await api(
      o,
      "GET",
      `/api/plans${o.status ? `?status=${encodeURIComponent(o.status)}` : ""}`,
    )) as Array<{ actions: unknown[] }>;
    await show(
      o,
      rows.map((p) => ({ ...p, actions: p.actions.length })),
      ["id", "status", "source", "actions", "createdAt"],
    );
  });
  for (const verb of ["approve", "cancel"] as const) {
    client(plans.command(verb).argument("<id>")).action(async (id, o) => {
      const { api, show } = await load();
      await show(o, [await api(o, "POST", `/api/plans/${encodeURIComponent(id)}/${verb}`)], ["id", "status"]);
    });
  }

  const tokens = program.command("token").description("API tokens: show the admin token, make, list, revoke");
  tokens
    .command("show")
    .description("print the admin token kept in a local controller's data dir")
    .option("--data-dir <dir>", "data dir of a local controller", DEFAULT_DATA_DIR)
    .action(async (o: { dataDir: string }) => (await load()).tokenShow(o));
  client(tokens.command("list", { isDefault: true })).action(async (o) => {
    const { api, show, when } = await load();
    const rows = (await api(o, "GET", "/api/tokens")) as Array<Record<string, number | null>>;
    await show(
      o,
      rows.map((t) => ({
        ...t,
        createdAt: when(t.createdAt),
        expiresAt: when(t.expiresAt),
        revokedAt: when(t.revokedAt),
      })),
      ["id", "role", "tenant", "label", "createdAt", "expiresAt", "revokedAt"],
    );
  });
  client(
    tokens
      .command("create")
      .requiredOption("--role <role>", "admin, tenant or metrics")
      .option("--tenant <tenant>", "the tenant of a tenant token")
      .option("--label <text>")
      .option("--expires-in <seconds>", "the token stops working after this many seconds"),
  ).action(async (o) => {
    const { api, show } = await load();
    if (!["admin", "tenant", "metrics"].includes(o.role))
      throw new UsageError(`--role ${o.role}: expected one of admin, tenant, metrics`);
    const made = (await api(o, "POST", "/api/tokens", {
      role: o.role,
      ...(o.tenant ? { tenant: o.tenant } : {}),
      ...(o.label ? { label: o.label } : {}),
      ...(o.expiresIn ? { expiresInSeconds: intOption("expires-in", o.expiresIn, 60, 315360000) } : {}),
    })) as { token: string; id: string };
    if (o.output === "json") return show(o, made, []);
    process.stderr.write(`token ${made.id} made; its secret is shown only now:\n`);
    process.stdout.write(`${made.token}\n`);
  });
  client(tokens.command("revoke").argument("<id>", "the token's id (tok_..., from `token list`)")).action(
    async (id, o) => {
      const { api, show } = await load();
      await show(
        o,
        [await api(o, "DELETE", `/api/tokens/${encodeURIComponent(id)}`)],
        ["id", "role", "tenant", "revokedAt"],
      );
    },
  );

  client(program.command("migrations").description("migrations, newest first").option("--status <s>")).action(
    async (o) => {
      const { api, show } = await load();
      await show(
        o,
        await api(o, "GET", `/api/migrations${o.status ? `?status=${encodeURIComponent(o.status)}` : ""}`),
        ["id", "guest", "from", "to", "mechanism", "status", "progress"],
      );
    },
  );
}
