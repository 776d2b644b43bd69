/**
 * The host-VM agent: one per host VM. Runs that host VM's guests through the qemu module
 * (create, start, stop, delete, status with heartbeats and workload reports), and does the
 * QEMU side of migrations: incoming (destination QEMU started paused, see incoming.ts) and
 * outgoing (see outgoing.ts). Which agent to call in which order is the orchestrator's job
 * (migration-orchestrator.ts), not this one's.
 *
 * Restarted after a crash (its supervisor does that), it adopts the QEMUs its predecessor
 * left running before it answers any request (recover): each QEMU's state file says what it
 * was (adoption.ts). A guest is a guest again (console reconnected, what it printed
 * meanwhile read from QEMU's serial log); a guest whose migration was under way gets that
 * migration back, followed from where QEMU stands (a completed one waits paused for the
 * orchestrator's confirm, or settles itself: outgoing.ts); a destination still paused is
 * an incoming again with a fresh lease, one that runs is a guest. Only QEMUs that cannot be
 * adopted (no record, no QMP) are killed, as before.
 */
import type { FastifyBaseLogger } from "fastify";
import { Type } from "typebox";
import { type InstanceState, QemuProcess, reapOrphans } from "../qemu/index.ts";
import { adoptedOutgoingStatus, parseRole } from "./adoption.ts";
import {
  CancelBody,
  ConfirmBody,
  CreateGuestBody,
  ExecBody,
  FinishIncomingBody,
  GuestParams,
  type GuestStatus,
  type HostVmStatus,
  MigrationParams,
  PrepareIncomingBody,
  QmpBody,
  StartOutgoingBody,
  WaitQuery,
  WorkloadSchema,
} from "./api-types.ts";
import { AgentHttpError, HostVmAgentClient, ServerAgentClient } from "./client.ts";
import type { HostVmAgentConfig } from "./config.ts";
import { type GuestContext, GuestRuntime } from "./guest-runtime.ts";
import { AgentError, type App, conflict, createApp, notFound } from "./http.ts";
import { IncomingMigration } from "./incoming.ts";
import { OutgoingMigration } from "./outgoing.ts";

export interface HostVmAgent {
  app: App;
  /** Adopts (or, failing that, reaps) the QEMUs a previous agent left behind; call before listening. */
  recover(): Promise<void>;
  /** Stops every guest and incoming QEMU (graceful agent shutdown). */
  shutdown(): Promise<void>;
}

export function buildHostVmAgent(
  cfg: HostVmAgentConfig,
  token: string,
  logger: FastifyBaseLogger,
): HostVmAgent {
  const ctx: GuestContext = {
    cfg,
    log: logger,
    peer: (url) => new HostVmAgentClient(url, token, { timeoutMs: 10_000 }),
  };
  const guests = new Map<string, GuestRuntime>();
  const incoming = new Map<string, IncomingMigration>();
  const outgoing = new Map<string, OutgoingMigration>();
  const reaped: HostVmStatus["reapedAtStart"] = [];
  const adopted: HostVmStatus["adoptedAtStart"] = [];
  const server = new ServerAgentClient(cfg.serverAgentUrl, token, { timeoutMs: 10_000 });
  const app = createApp(token, logger);

  const guestOf = (id: string): GuestRuntime => {
    const g = guests.get(id);
    if (!g) throw notFound(`no guest ${id} on host VM ${cfg.server}/${cfg.hostVm}`);
    return g;
  };
  const incomingOf = (id: string) => {
    const m = incoming.get(id);
    if (!m) throw notFound(`no incoming migration ${id} on host VM ${cfg.server}/${cfg.hostVm}`);
    return m;
  };
  const outgoingOf = (id: string) => {
    const m = outgoing.get(id);
    if (!m) throw notFound(`no outgoing migration ${id} on host VM ${cfg.server}/${cfg.hostVm}`);
    return m;
  };
  // Finished migrations stay visible for a while (status, post-mortems), not forever.
  const prune = <T extends { done(): boolean }>(m: Map<string, T>) => {
    const finished = [...m].filter(([, v]) => v.done());
    for (const [k] of finished.slice(0, Math.max(0, finished.length - 50))) m.delete(k);
  };
  const busy = (id: string) => {
    for (const m of outgoing.values()) {
      if (
        m.guest.guestId === id &&
        (m.phase === "running" ||
          m.phase === "pre-switchover" ||
          m.phase === "postcopy" ||
          m.phase === "completed")
      ) {
        throw conflict(`guest ${id} is being migrated (${m.migrationId}, ${m.phase})`);
      }
    }
  };

  app.get(
    "/v1/status",
    async (): Promise<HostVmStatus> => ({
      role: "hostvm",
      testbedId: cfg.testbedId,
      server: cfg.server,
      hostVm: cfg.hostVm,
      pid: process.pid,
      memoryMiB: cfg.memoryMiB,
      cpus: cfg.cpus,
      guests: [...guests.values()].map((g) => g.status()),
      incoming: [...incoming.values()].map((m) => m.status()),
      outgoing: [...outgoing.values()].map((m) => m.status()),
      reapedAtStart: reaped,
      adoptedAtStart: adopted,
    }),
  );

  // ---- guests ----------------------------------------------------------------------------

  app.post("/v1/guests", { schema: { body: CreateGuestBody } }, async (req, reply): Promise<GuestStatus> => {
    const b = req.body;
    if (guests.has(b.guestId))
      throw conflict(`guest ${b.guestId} already exists on ${cfg.server}/${cfg.hostVm}`);
    for (const m of incoming.values()) {
      if (m.req.guest.guestId === b.guestId && (m.state === "listening" || m.state === "armed")) {
        throw conflict(`guest ${b.guestId} is arriving here by migration ${m.migrationId}`);
      }
    }
    const g = new GuestRuntime(ctx, { guestId: b.guestId, memoryMiB: b.memoryMiB, cpus: b.cpus });
    guests.set(b.guestId, g);
    try {
      await server.reserve({ hostVm: cfg.hostVm, guestId: b.guestId, memoryMiB: b.memoryMiB });
    } catch (e) {
      guests.delete(b.guestId);
      if (e instanceof AgentHttpError)
        throw new AgentError(e.status, e.body.error, `server agent: ${e.body.message}`);
      throw new AgentError(503, "server_agent_unreachable", (e as Error).message);
    }
    try {
      await g.boot(b.workloads ?? [], b.waitReady ?? true, b.bootTimeoutMs ?? 180_000);
    } catch (e) {
      await g.stop().catch(() => {});
      guests.delete(b.guestId);
      await server.release(cfg.hostVm, b.guestId).catch(() => {});
      throw e;
    }
    req.log.info({ guest: b.guestId, pid: g.qemu?.pid }, "guest started");
    reply.code(201);
    return g.status();
  });

  app.get("/v1/guests/:guestId", { schema: { params: GuestParams } }, async (req) => {
    const g = guestOf(req.params.guestId);
    const st = g.status();
    if (g.qemu?.isRunning) st.qemuStatus = (await g.qemu.qmp.queryStatus().catch(() => null))?.status ?? null;
    return st;
  });

  app.post("/v1/guests/:guestId/start", { schema: { params: GuestParams } }, async (req) => {
    const g = guestOf(req.params.guestId);
    if (g.state !== "stopped" && g.state !== "failed") throw conflict(`guest ${g.guestId} is ${g.state}`);
    if (g.qemu) await g.stop();
    await g.boot(g.workloads, true, 180_000);
    return g.status();
  });

  app.post("/v1/guests/:guestId/stop", { schema: { params: GuestParams } }, async (req) => {
    const g = guestOf(req.params.guestId);
    busy(g.guestId);
    await g.stop();
    return g.status();
  });

  app.delete("/v1/guests/:guestId", { schema: { params: GuestParams } }, async (req, reply) => {
    const g = guestOf(req.params.guestId);
    busy(g.guestId);
    await g.stop();
    guests.delete(g.guestId);
    await server
      .release(cfg.hostVm, g.guestId)
      .catch((e) => req.log.warn({ err: e.message }, "release failed"));
    return reply.code(204).send();
  });

  app.post(
    "/v1/guests/:guestId/workloads",
    { schema: { params: GuestParams, body: WorkloadSchema } },
    async (req) => {
      const g = guestOf(req.params.guestId);
      await g.startWorkload(req.body);
      return g.status();
    },
  );

  app.delete(
    "/v1/guests/:guestId/workloads/:kind",
    {
      schema: {
        params: Type.Object({
          guestId: GuestParams.properties.guestId,
          kind: Type.Enum(["verify", "dirty"]),
        }),
      },
    },
    async (req) => {
      const g = guestOf(req.params.guestId);
      await g.stopWorkload(req.params.kind);
      return g.status();
    },
  );

  app.post("/v1/guests/:guestId/exec", { schema: { params: GuestParams, body: ExecBody } }, async (req) => {
    return guestOf(req.params.guestId).exec(req.body.command, req.body.timeoutMs ?? 10_000);
  });

  // A QMP passthrough for operators and tests; errors come back with QEMU's own text.
  app.post("/v1/guests/:guestId/qmp", { schema: { params: GuestParams, body: QmpBody } }, async (req) => {
    const g = guestOf(req.params.guestId);
    if (!g.qemu?.isRunning) throw conflict(`guest ${g.guestId} has no running QEMU`);
    return { return: await g.qemu.qmp.execute(req.body.execute, req.body.arguments) };
  });

  // ---- outgoing (source side) ------------------------------------------------------------

  app.post(
    "/v1/guests/:guestId/outgoing",
    { schema: { params: GuestParams, body: StartOutgoingBody } },
    async (req, reply) => {
      const g = guestOf(req.params.guestId);
      if (g.state !== "running") throw conflict(`guest ${g.guestId} is ${g.state}, not running`);
      busy(g.guestId);
      if (outgoing.has(req.body.migrationId)) throw conflict(`migration ${req.body.migrationId} exists`);
      const m = new OutgoingMigration(ctx, g, req.body, onGone);
      prune(outgoing);
      outgoing.set(m.migrationId, m);
      m.start();
      await m.changes.until(() => m.phase !== "running", req.body.waitMs ?? 0);
      reply.code(202);
      return m.status();
    },
  );

  app.get(
    "/v1/outgoing/:migrationId",
    { schema: { params: MigrationParams, querystring: WaitQuery } },
    async (req) => {
      const m = outgoingOf(req.params.migrationId);
      const { waitMs, unless } = req.query;
      if (waitMs && unless) await m.changes.until(() => m.phase !== unless, waitMs);
      return m.status();
    },
  );

  app.post(
    "/v1/outgoing/:migrationId/cancel",
    { schema: { params: MigrationParams, body: CancelBody } },
    async (req) => {
      const m = outgoingOf(req.params.migrationId);
      await m.cancel(req.body.reason ?? "cancelled on request");
      return m.status();
    },
  );

  app.post("/v1/outgoing/:migrationId/continue", { schema: { params: MigrationParams } }, async (req) => {
    const m = outgoingOf(req.params.migrationId);
    await m.continueSwitchover();
    return m.status();
  });

  app.post("/v1/outgoing/:migrationId/postcopy", { schema: { params: MigrationParams } }, async (req) => {
    const m = outgoingOf(req.params.migrationId);
    await m.startPostcopy();
    return m.status();
  });

  app.post(
    "/v1/outgoing/:migrationId/confirm",
    { schema: { params: MigrationParams, body: ConfirmBody } },
    async (req) => {
      const m = outgoingOf(req.params.migrationId);
      await m.confirm(req.body.outcome);
      req.log.info({ migration: m.migrationId, outcome: req.body.outcome }, "outgoing migration confirmed");
      return m.status();
    },
  );

  // ---- incoming (destination side) -------------------------------------------------------

  app.post("/v1/incoming", { schema: { body: PrepareIncomingBody } }, async (req, reply) => {
    const b = req.body;
    if (incoming.has(b.migrationId)) throw conflict(`incoming migration ${b.migrationId} exists`);
    if (guests.has(b.guest.guestId))
      throw conflict(`guest ${b.guest.guestId} already runs on ${cfg.server}/${cfg.hostVm}`);
    const m = new IncomingMigration(ctx, b, arrived);
    prune(incoming);
    incoming.set(b.migrationId, m);
    try {
      await m.prepare();
    } catch (e) {
      incoming.delete(b.migrationId);
      throw e;
    }
    reply.code(201);
    return m.status();
  });

  app.get(
    "/v1/incoming/:migrationId",
    {
      schema: { params: MigrationParams, querystring: Type.Object({ renew: Type.Optional(Type.Boolean()) }) },
    },
    async (req) => {
      const m = incomingOf(req.params.migrationId);
      // Only the orchestrator renews: an observer's reads must not keep an abandoned incoming alive.
      if (req.query.renew) m.renewLease();
      const st = m.status();
      if (m.qemu?.isRunning)
        st.qemuStatus = (await m.qemu.qmp.queryStatus().catch(() => null))?.status ?? null;
      return st;
    },
  );

  app.post(
    "/v1/incoming/:migrationId/finish",
    { schema: { params: MigrationParams, body: FinishIncomingBody } },
    async (req) => {
      const m = incomingOf(req.params.migrationId);
      await m.finish(req.body);
      return m.status();
    },
  );

  app.delete("/v1/incoming/:migrationId", { schema: { params: MigrationParams } }, async (req) => {
    const m = incomingOf(req.params.migrationId);
    await m.abort();
    return m.status();
  });

  /** A guest left this host VM (its migration away was confirmed). */
  function onGone(done: OutgoingMigration): void {
    guests.delete(done.guest.guestId);
  }

  /** An incoming migration's QEMU runs the guest: it is one of our guests now. */
  async function arrived(done: IncomingMigration, q: QemuProcess): Promise<void> {
    const g = new GuestRuntime(ctx, done.req.guest);
    guests.set(g.guestId, g);
    await g.adopt(q, done.req.workloads ?? [], null);
    logger.info({ guest: g.guestId, migration: done.migrationId }, "guest arrived and runs here");
  }

  /** Takes over one QEMU of a dead predecessor (see the header); false: reap it. */
  async function adoptOne(s: InstanceState): Promise<boolean> {
    const role = parseRole(s.agentData);
    if (!role) return false;
    const guestId = role.role === "guest" ? role.guest.guestId : role.req.guest.guestId;
    if (guests.has(guestId)) return false;
    const q = await QemuProcess.adopt(s, { log: (m) => logger.debug({ guest: guestId }, m) });
    try {
      const qemuStatus = (await q.qmp.queryStatus()).status;
      let migrationId: string | null = null;
      if (role.role === "guest") {
        const g = await GuestRuntime.adoptOrphan(ctx, q, role);
        guests.set(guestId, g);
        if (role.outgoing) {
          const status = await adoptedOutgoingStatus(q, { ...role, outgoing: role.outgoing });
          const m = OutgoingMigration.adopt(ctx, g, role.outgoing, onGone, status);
          outgoing.set(m.migrationId, m);
          m.start();
          migrationId = m.migrationId;
          logger.warn(
            { guest: guestId, migration: migrationId, found: status, qemuStatus },
            "adopted a guest with its outgoing migration",
          );
        } else logger.warn({ guest: guestId, qemuStatus, state: g.state }, "adopted a guest");
      } else {
        const m = await IncomingMigration.adoptOrphan(ctx, q, role, arrived);
        incoming.set(m.migrationId, m);
        migrationId = m.migrationId;
        logger.warn(
          { guest: guestId, migration: migrationId, qemuStatus, state: m.state },
          "adopted an incoming migration",
        );
      }
      adopted.push({
        instanceId: s.instanceId,
        guestId,
        pid: q.pid!,
        as: role.role,
        migrationId,
        qemuStatus,
      });
      return true;
    } catch (e) {
      guests.delete(guestId);
      await q.kill().catch(() => {});
      throw e;
    }
  }

  return {
    app,
    async recover() {
      const r = await reapOrphans(cfg.qemuDir, (msg) => logger.warn(msg), { adopt: adoptOne });
      reaped.push(...r.killed);
      if (r.killed.length > 0 || r.removedPoolFiles.length > 0) {
        logger.warn(
          { killed: r.killed, removedPoolFiles: r.removedPoolFiles },
          "reaped QEMUs of a previous agent",
        );
      }
    },
    async shutdown() {
      for (const m of incoming.values()) await m.abort().catch(() => {});
      for (const g of guests.values()) await g.stop().catch(() => {});
    },
  };
}
