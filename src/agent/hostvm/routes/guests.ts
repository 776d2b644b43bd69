/**
 * The guests resource: create (check its devices, reserve its memory at the server agent,
 * make its disks, boot it), read, start, stop, delete (its disks and logs with it).
 */
import { CreateGuestBody, errorAnswers, GuestParams, GuestStatusSchema, NoContent } from "../../api-types.ts";
import { AgentHttpError } from "../../client.ts";
import { AgentError, conflict, type RoutePlugin } from "../../http.ts";
import { completeDevices, createGuestStore, hasStore, removeGuestStore } from "../devices.ts";
import { GuestRuntime } from "../guest-runtime.ts";
import type { HostVm } from "../state.ts";

/** What this resource answers when it cannot do what was asked (besides 400, 401, 500). */
const GuestErrors = {
  /** 409: the id is taken on this host VM. */
  exists: (id: string, where: string) => conflict(`guest ${id} already exists on ${where}`),
  /** 409: start of a guest that is not stopped or failed. */
  notStopped: (id: string, state: string) => conflict(`guest ${id} is ${state}`),
  /** 4xx/5xx as the server agent answered a reservation. */
  serverAgent: (e: AgentHttpError) =>
    new AgentError(e.status, e.body.error, `server agent: ${e.body.message}`),
  /** 503: the server agent did not answer. */
  serverAgentUnreachable: (e: Error) => new AgentError(503, "server_agent_unreachable", e.message),
};

/** Boot bound when none is asked for: a TCG boot under load takes up to a minute or two. */
const DEFAULT_BOOT_TIMEOUT_MS = 180_000;

export const guestRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  const tags = ["guests"];

  app.post(
    "/v1/guests",
    {
      schema: {
        tags,
        body: CreateGuestBody,
        response: { 201: GuestStatusSchema, ...errorAnswers(409, 502, 503) },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (host.guests.has(b.guestId)) throw GuestErrors.exists(b.guestId, host.where);
      host.assertNotArriving(b.guestId);
      // Checked (400 naming the field) and completed (MACs, sizes) before anything is made.
      const devices = b.devices ? await completeDevices(host.cfg, b.guestId, b.devices) : undefined;
      const g = new GuestRuntime(host.ctx, {
        guestId: b.guestId,
        memoryMiB: b.memoryMiB,
        cpus: b.cpus,
        ...(devices ? { devices } : {}),
      });
      host.guests.set(b.guestId, g);
      try {
        await host.server.reserve({ hostVm: host.cfg.hostVm, guestId: b.guestId, memoryMiB: b.memoryMiB });
      } catch (e) {
        host.guests.delete(b.guestId);
        if (e instanceof AgentHttpError) throw GuestErrors.serverAgent(e);
        throw GuestErrors.serverAgentUnreachable(e as Error);
      }
      let stored = false;
      try {
        await createGuestStore(host.cfg, g.config);
        stored = true;
        await g.boot(b.workloads ?? [], b.waitReady ?? true, b.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS);
      } catch (e) {
        await g.stop().catch(() => {});
        host.guests.delete(b.guestId);
        if (stored) removeGuestStore(host.cfg, b.guestId);
        await host.server.release(host.cfg.hostVm, b.guestId).catch(() => {});
        throw e;
      }
      req.log.info({ guest: b.guestId, pid: g.qemu?.pid }, "guest started");
      reply.code(201);
      return g.status();
    },
  );

  app.get(
    "/v1/guests/:guestId",
    { schema: { tags, params: GuestParams, response: { 200: GuestStatusSchema, ...errorAnswers(404) } } },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      const st = g.status();
      if (g.qemu?.isRunning)
        st.qemuStatus = (await g.qemu.qmp.queryStatus().catch(() => null))?.status ?? null;
      return st;
    },
  );

  app.post(
    "/v1/guests/:guestId/start",
    {
      schema: { tags, params: GuestParams, response: { 200: GuestStatusSchema, ...errorAnswers(404, 409) } },
    },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      if (g.state !== "stopped" && g.state !== "failed") throw GuestErrors.notStopped(g.guestId, g.state);
      if (g.qemu) await g.stop();
      await g.boot(g.workloads, true, DEFAULT_BOOT_TIMEOUT_MS);
      return g.status();
    },
  );

  app.post(
    "/v1/guests/:guestId/stop",
    {
      schema: { tags, params: GuestParams, response: { 200: GuestStatusSchema, ...errorAnswers(404, 409) } },
    },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      host.assertNotMigrating(g.guestId);
      await g.stop();
      return g.status();
    },
  );

  app.delete(
    "/v1/guests/:guestId",
    { schema: { tags, params: GuestParams, response: { 204: NoContent, ...errorAnswers(404, 409) } } },
    async (req, reply) => {
      const g = host.guestOf(req.params.guestId);
      host.assertNotMigrating(g.guestId);
      await g.stop();
      host.guests.delete(g.guestId);
      // Its disks and logs go with it.
      if (hasStore(g.config)) removeGuestStore(host.cfg, g.guestId);
      await host.server
        .release(host.cfg.hostVm, g.guestId)
        .catch((e) => req.log.warn({ err: e.message }, "release failed"));
      return reply.code(204).send(null);
    },
  );
};
