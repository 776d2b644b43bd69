/**
 * Registers `nestcloud up` and the commands that talk to a running controller's API:
 * servers, hostvms, vms, plans, settings, token, migrations. Registering loads nothing but
 * commander and the light choices.ts, output.ts and usage.ts: each action imports its
 * implementation when it runs (controller.ts for `up`, client.ts for the others), so that
 * `--help`, `--version` and the API commands start at once. Flags with fixed values are
 * checked as they are parsed (`choice`), before anything is loaded or asked.
 */
import type { Command } from "commander";
import {
  AUTOMATION_LEVELS,
  LOG_FORMATS,
  MIGRATION_MECHANISMS,
  MIGRATION_STATUSES,
  OUTPUTS,
  PLAN_STATUSES,
  POWER_ACTIONS,
  PROVIDERS,
  REJUVENATION_MODES,
  TOKEN_ROLES,
} from "./choices.ts";
import { choice, providerTime } from "./output.ts";
import { intOption, UsageError } from "./usage.ts";

const DEFAULT_DATA_DIR = ".nestcloud";
const load = () => import("./client.ts");

export function registerController(program: Command): void {
  program
    .command("up")
    .description("start the controller and its dashboard (default: a simulated cloud)")
    .option(
      "--provider <name>",
      "sim, testbed or openstack (openrc variables OS_* in the env or --os-credentials)",
      choice("provider", PROVIDERS),
      "sim",
    )
    .option("--db <url>", "sqlite:<file> or postgres://... (default: <data-dir>/nestcloud.db)")
    .option("--port <n>", "HTTP port", "8080")
    .option("--host <addr>", "listen address", "127.0.0.1")
    .option("--data-dir <dir>", "where the store and the admin token live", DEFAULT_DATA_DIR)
    .option("--speed <n>", "simulated seconds per second (sim provider)", "60")
    .option("--guests <n>", "guest VMs in the simulated cloud (first start only)")
    .option("--testbed <id|folder>", "the testbed to run on (testbed provider): its id or its state folder")
    .option("--testbed-root <dir>", "where testbed state folders live (as `testbed up --root`)")
    .option("--os-auth-url <url>", "Keystone v3 URL (openstack provider; default $OS_AUTH_URL)")
    .option("--os-project <name>", "the project to rent host VMs in (openstack; default $OS_PROJECT_NAME)")
    .option(
      "--os-credentials <file>",
      "openrc-style file (mode 600) with OS_USERNAME, OS_PASSWORD, ... (openstack; never give a password as a flag)",
    )
    .option("--os-image <id>", "image the host VMs boot (openstack; default $NESTCLOUD_OPENSTACK_IMAGE)")
    .option(
      "--agent-token-file <file>",
      "the host VMs' agents' token (openstack: guests run through them; default $NESTCLOUD_AGENT_TOKEN_FILE)",
    )
    .option("--agent-network <name>", "the Nova network the agents listen on (openstack; default the first)")
    .option("--interval <s>", "seconds between planning rounds (default 300 sim, 30 testbed)")
    .option(
      "--policy-param <name=value>",
      "a parameter of the nestcloud policy, e.g. overloadUtilization=0.8 (repeatable)",
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option("--rollout-max-age-hours <h>", "renew every hypervisor older than this, one host VM at a time")
    .option(
      "--rollout-version <name>",
      "roll a hypervisor version out: renew every host VM whose hypervisor started before this controller",
    )
    .option(
      "--rollout-mode <mode>",
      "how the rollout renews a host VM: in-place, or evacuate where a spare has room",
      choice("rollout-mode", REJUVENATION_MODES),
      "in-place",
    )
    .option(
      "--log-format <format>",
      "pretty (a terminal's default), json (otherwise), or auto",
      choice("log-format", LOG_FORMATS),
      "auto",
    )
    .action(async (o) => (await import("./controller.ts")).up(o));

  const client = (cmd: Command) =>
    cmd
      .option("--url <url>", "controller URL (default: $NESTCLOUD_URL or the data dir's)")
      .option("--token <token>", "bearer token (default: $NESTCLOUD_TOKEN or the data dir's admin token)")
      .option("--data-dir <dir>", "data dir of a local controller", DEFAULT_DATA_DIR)
      .option("-o, --output <format>", "table or json", choice("output", OUTPUTS), "table");

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
    const { api, cpuAsPercent, show } = await load();
    await show(o, cpuAsPercent(o, await api(o, "GET", "/api/hostvms")), [
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
  client(
    hostvms
      .command("rejuvenate")
      .description("renew a host VM's hypervisor layer under its running guests")
      .argument("<id>")
      .option(
        "--mode <mode>",
        "in-place (a fresh QEMU per guest on the same host VM, then its agent) or evacuate (guests to a spare host VM of the server and back)",
        choice("mode", REJUVENATION_MODES),
        "in-place",
      )
      .option("--no-move-back", "evacuate: leave the guests on the spare (the renewed host VM becomes one)")
      .option("--no-wait", "print the plan and return at once"),
  ).action(async (id, o) => {
    const { api, show, watchRejuvenation } = await load();
    const accepted = (await api(o, "POST", `/api/hostvms/${encodeURIComponent(id)}/rejuvenate`, {
      mode: o.mode,
      ...(o.moveBack === false ? { moveBack: false } : {}),
    })) as { plan: number };
    if (o.wait === false) return show(o, [accepted], ["plan"]);
    await watchRejuvenation(o, id, accepted.plan);
  });

  const vms = program.command("vms").alias("vm").description("guest VMs");
  client(vms.command("list", { isDefault: true })).action(async (o) => {
    const { api, cpuAsPercent, show } = await load();
    await show(o, cpuAsPercent(o, await api(o, "GET", "/api/vms")), [
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
      .option(
        "--mechanism <m>",
        MIGRATION_MECHANISMS.join(", "),
        choice("mechanism", MIGRATION_MECHANISMS),
        "auto",
      )
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

  // The virtual AMT: power and boot control, inventory, the event log.
  client(
    vms
      .command("power")
      .description(
        "power and boot control, also when the guest is hung or off: on, off (hard), shutdown (ACPI; --force: then hard), reset, rescue (boot the rescue command line), normal (boot back)",
      )
      .argument("<id>")
      .argument("<action>", POWER_ACTIONS.join("|"), choice("action", POWER_ACTIONS))
      .option("--force", "shutdown: power off hard if the guest ignores the power button")
      .option("--wait <s>", "shutdown: seconds to wait for the guest (default 30)")
      .option("--append <args>", "rescue: extra kernel arguments"),
  ).action(async (id, action, o) => {
    const { api, show } = await load();
    const r = (await api(o, "POST", `/api/vms/${encodeURIComponent(id)}/power`, {
      action,
      ...(o.force ? { force: true } : {}),
      ...(o.wait !== undefined ? { waitMs: intOption("wait", o.wait, 0, 300)! * 1000 } : {}),
      ...(o.append ? { append: o.append } : {}),
    })) as { outcome: string; power: string; boot: string; detail: string };
    if (o.output === "json") return show(o, r, []);
    process.stdout.write(
      `${id}: power ${action}: ${r.outcome}, now ${r.power} (${r.boot} boot): ${r.detail}\n`,
    );
    // A shutdown the guest ignored is not a success (the guest is still on).
    if (r.outcome === "ignored") process.exitCode = 3;
  });
  client(
    vms
      .command("inventory")
      .argument("<id>")
      .description("vCPUs, memory, disks, NICs, kernel and command line"),
  ).action(async (id, o) => {
    const { api, show } = await load();
    const inv = (await api(o, "GET", `/api/vms/${encodeURIComponent(id)}/inventory`)) as Record<
      string,
      unknown
    >;
    if (o.output === "json") return show(o, inv, []);
    const rows = Object.entries(inv).map(([field, v]) => ({
      field,
      value: typeof v === "object" && v !== null ? JSON.stringify(v) : String(v),
    }));
    await show(o, rows, ["field", "value"]);
  });
  client(
    vms
      .command("events")
      .argument("<id>")
      .description(
        "the guest's event log, newest first: power actions (who asked), boots, panics, migrations, consoles",
      )
      .option("--limit <n>", "events per page (default 50)")
      .option("--offset <n>", "skip this many newest events"),
  ).action(async (id, o) => {
    const { api, show } = await load();
    const q = new URLSearchParams({
      limit: String(o.limit !== undefined ? intOption("limit", o.limit, 1, 1000) : 50),
      offset: String(o.offset !== undefined ? intOption("offset", o.offset, 0, 1e9) : 0),
    });
    const rows = (await api(o, "GET", `/api/vms/${encodeURIComponent(id)}/events?${q}`)) as Array<{
      at: number;
      actor: string | null;
    }>;
    if (o.output === "json") return show(o, rows, []);
    await show(
      o,
      rows.map((r) => ({ ...r, at: new Date(r.at * 1000).toISOString(), actor: r.actor ?? "-" })),
      ["at", "kind", "actor", "detail"],
    );
  });

  client(
    program
      .command("console")
      .description("a guest's console, end to end encrypted (Ctrl-] q detaches, Ctrl-] t takes the keyboard)")
      .argument("<vm>", "the guest VM's id")
      .option("--port <id>", "the guest's serial port (default: console)")
      .option("--watch", "watch only: do not take the keyboard")
      .option(
        "--pin <fingerprint>",
        "accept only this agent key (SHA256:..., repeatable)",
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option("-q, --quiet", "no status lines"),
  ).action(async (id, o) => {
    const { runConsole, checkFingerprints } = await import("./console.ts");
    process.exitCode = await runConsole(id, { ...o, pin: checkFingerprints(o.pin ?? []) });
  });

  const plans = program.command("plans").description("action plans");
  client(
    plans
      .command("list", { isDefault: true })
      .option("--status <s>", PLAN_STATUSES.join(", "), choice("status", PLAN_STATUSES)),
  ).action(async (o) => {
    const { api, providerClock, show } = await load();
    const rows = (await api(
      o,
      "GET",
      `/api/plans${o.status ? `?status=${encodeURIComponent(o.status)}` : ""}`,
    )) as Array<{ actions: unknown[]; createdAt: number }>;
    const counted = rows.map((p) => ({ ...p, actions: p.actions.length }));
    if (o.output === "json") return show(o, counted, []);
    const clock = await providerClock(o);
    await show(
      o,
      counted.map((p) => ({ ...p, created: providerTime(clock, p.createdAt) })),
      ["id", "status", "source", "actions", "created"],
    );
  });
  for (const verb of ["approve", "cancel"] as const) {
    client(plans.command(verb).argument("<id>")).action(async (id, o) => {
      const { api, show } = await load();
      await show(o, [await api(o, "POST", `/api/plans/${encodeURIComponent(id)}/${verb}`)], ["id", "status"]);
    });
  }

  const settings = program.command("settings").description("the cloud's settings (automation level)");
  client(settings.command("show", { isDefault: true })).action(async (o) => {
    const { api, show } = await load();
    await show(o, [await api(o, "GET", "/api/settings")], ["automation"]);
  });
  client(
    settings
      .command("automation")
      .description("show or set how the planner acts: manual, suggest (plans wait for approval) or automatic")
      .argument("[level]", AUTOMATION_LEVELS.join(", ")),
  ).action(async (level: string | undefined, o) => {
    if (level !== undefined && !(AUTOMATION_LEVELS as readonly string[]).includes(level))
      throw new UsageError(`automation ${level}: expected one of ${AUTOMATION_LEVELS.join(", ")}`);
    const { api, show } = await load();
    if (level === undefined) return show(o, [await api(o, "GET", "/api/settings")], ["automation"]);
    await show(o, [await api(o, "PUT", "/api/settings", { automation: level })], ["automation"]);
  });

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
      o.output === "json"
        ? rows
        : rows.map((t) => ({
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
      .requiredOption("--role <role>", TOKEN_ROLES.join(", "), choice("role", TOKEN_ROLES))
      .option("--tenant <tenant>", "the tenant of a tenant token")
      .option("--label <text>")
      .option("--expires-in <seconds>", "the token stops working after this many seconds"),
  ).action(async (o) => {
    const { api, show } = await load();
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

  client(
    program
      .command("alerts")
      .description("security VMs' alerts through the controller (a tenant token: its own), oldest first")
      .option("--secvm <id>", "of this security VM")
      .option("--target <id>", "about this guest")
      .option("--monitor <m>", "memory, disk or network")
      .option("--severity <s>", "info, warning or critical")
      .option("--after <n>", "after this alert id (the previous page's last)")
      .option("--limit <n>", "at most this many (1-1000)"),
  ).action(async (o) => {
    const { api, show } = await load();
    const q = new URLSearchParams();
    for (const k of ["secvm", "target", "monitor", "severity"] as const)
      if (o[k] !== undefined) q.set(k, o[k]);
    // Checked here; monitor and severity by the API (its error lists the values).
    const after = intOption("after", o.after, 0, Number.MAX_SAFE_INTEGER);
    const limit = intOption("limit", o.limit, 1, 1000);
    if (after !== undefined) q.set("after", String(after));
    if (limit !== undefined) q.set("limit", String(limit));
    const page = (await api(o, "GET", `/api/alerts${q.size ? `?${q}` : ""}`)) as {
      alerts: Array<{ time: number }>;
    };
    if (o.output === "json") return show(o, page, []);
    await show(
      o,
      page.alerts.map((a) => ({ ...a, time: new Date(a.time).toISOString() })),
      ["id", "time", "secvm", "target", "monitor", "channel", "severity", "summary"],
    );
  });

  client(
    program
      .command("migrations")
      .description("migrations, newest first")
      .option("--status <s>", MIGRATION_STATUSES.join(", "), choice("status", MIGRATION_STATUSES)),
  ).action(async (o) => {
    const { api, providerClock, show } = await load();
    const rows = (await api(
      o,
      "GET",
      `/api/migrations${o.status ? `?status=${encodeURIComponent(o.status)}` : ""}`,
    )) as Array<{ progress: number; startedAt: number }>;
    if (o.output === "json") return show(o, rows, []);
    const clock = await providerClock(o);
    await show(
      o,
      rows.map((m) => ({
        ...m,
        // Floored: a running migration never shows 100 %.
        progress: `${Math.floor(m.progress * 100)} %`,
        started: providerTime(clock, m.startedAt),
      })),
      ["id", "guest", "from", "to", "mechanism", "status", "progress", "started"],
    );
  });
}
