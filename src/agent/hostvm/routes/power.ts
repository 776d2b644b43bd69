/**
 * The virtual AMT at the host-VM agent: a guest's power and boot actions (its QEMU outlives
 * the guest's OS: hung, panicked or powered off, it answers), its inventory, and the events
 * its guests caused (drained by the controller, which keeps the event log).
 */
import { basename } from "node:path";
import {
  errorAnswers,
  GuestParams,
  type Inventory,
  InventorySchema,
  PowerAnswerSchema,
  PowerBody,
  PowerEventsAnswer,
  PowerEventsQuery,
} from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { GuestRuntime } from "../guest-runtime.ts";
import { bootAppend, powerStateOf } from "../power.ts";
import type { HostVm } from "../state.ts";

// What this resource answers besides 400, 401, 500: 404 no such guest; 409 the guest is
// migrating, arriving, or has no QEMU (stopped: start it); 502 QEMU refused a command.
export const powerRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  const tags = ["power"];

  app.post(
    "/v1/guests/:guestId/power",
    {
      schema: {
        tags,
        params: GuestParams,
        body: PowerBody,
        response: { 200: PowerAnswerSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      host.assertNotMigrating(g.guestId);
      host.assertNotArriving(g.guestId);
      const a = await g.powerAction(req.body);
      req.log.info(
        { guest: g.guestId, action: req.body.action, outcome: a.outcome, power: a.power },
        "power action",
      );
      return a;
    },
  );

  app.get(
    "/v1/guests/:guestId/inventory",
    { schema: { tags, params: GuestParams, response: { 200: InventorySchema, ...errorAnswers(404) } } },
    async (req) => inventoryOf(host, host.guestOf(req.params.guestId)),
  );

  app.get(
    "/v1/power/events",
    {
      schema: {
        tags,
        querystring: PowerEventsQuery,
        response: { 200: PowerEventsAnswer, ...errorAnswers() },
      },
    },
    async (req) => host.ctx.powerLog.after(req.query.after ?? 0),
  );
};

async function inventoryOf(host: HostVm, g: GuestRuntime): Promise<Inventory> {
  const q = g.qemu?.isRunning ? g.qemu : null;
  const qemuStatus = q ? ((await q.qmp.queryStatus().catch(() => null))?.status ?? null) : null;
  const img = host.cfg.image;
  const c = g.config;
  const commandLine = [img.append ?? "", `nestcloud.bootid=${c.bootId}`, bootAppend(c.boot) ?? ""]
    .filter((s) => s !== "")
    .join(" ");
  const devices = c.devices ?? [];
  return {
    guestId: g.guestId,
    hostVm: host.cfg.hostVm,
    server: host.cfg.server,
    cpus: c.cpus,
    memoryMiB: c.memoryMiB,
    disks: devices.flatMap((d) =>
      d.kind === "disk"
        ? [{ id: d.id, sizeMiB: d.sizeMiB ?? null, format: d.format ?? "raw", readOnly: d.readOnly === true }]
        : [],
    ),
    nics: devices.flatMap((d) =>
      d.kind === "nic" ? [{ id: d.id, mac: d.mac ?? "", backend: d.backend ?? "user" }] : [],
    ),
    serials: devices.flatMap((d) => (d.kind === "serial" ? [{ id: d.id, logged: d.log === true }] : [])),
    // Direct kernel boot (QEMU's linuxboot option ROM on SeaBIOS): no disk firmware in between.
    firmware: "SeaBIOS, direct kernel boot",
    kernel: basename(img.kernel),
    initrd: basename(img.initrd),
    commandLine,
    boot: c.boot?.mode ?? "normal",
    power: q ? powerStateOf(qemuStatus, g.heldOff) : "off",
    qemuStatus,
    pvpanic: true,
  };
}
