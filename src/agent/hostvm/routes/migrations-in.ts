/**
 * Incoming migrations (the destination side): prepare a paused destination QEMU, read it
 * (the orchestrator's reads renew its lease), finish it (the guest starts running here) or
 * abort it. See incoming.ts for the fence these decisions form.
 */

import { digestRamFile } from "../../../qemu/index.ts";
import {
  ContinuedLogsSchema,
  errorAnswers,
  FinishIncomingBody,
  IncomingQuery,
  IncomingStatusSchema,
  MigrationParams,
  PrepareIncomingBody,
  RamDigestSchema,
} from "../../api-types.ts";
import { conflict, type RoutePlugin } from "../../http.ts";
import { IncomingMigration } from "../incoming.ts";
import type { HostVm } from "../state.ts";

/** What this resource answers when it cannot do what was asked (besides 400, 401, 404, 500). */
const IncomingErrors = {
  /** 409: the migration id is taken. */
  exists: (id: string) => conflict(`incoming migration ${id} exists`),
  /** 409: the guest already runs on this host VM. */
  guestHere: (id: string, where: string) => conflict(`guest ${id} already runs on ${where}`),
  /** 409: the destination's RAM is not frozen (a pre-copy's load completed, not started). */
  notFrozen: (id: string, why: string) =>
    conflict(`incoming ${id}: the destination's RAM is not frozen (${why})`),
};
// Further answers come from the incoming itself: 409 when finish or abort meets a decided
// incoming (or one that runs the guest), 409 destination_gone, 504 finish_timeout, 502 QEMU.

export const incomingRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  const tags = ["migrations-in"];

  app.post(
    "/v1/incoming",
    {
      schema: {
        tags,
        body: PrepareIncomingBody,
        response: { 201: IncomingStatusSchema, ...errorAnswers(409, 502) },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (host.incoming.has(b.migrationId)) throw IncomingErrors.exists(b.migrationId);
      if (b.inPlace) host.assertLiveUpdatable(b.guest.guestId, b.mode);
      else if (host.guests.has(b.guest.guestId)) throw IncomingErrors.guestHere(b.guest.guestId, host.where);
      const m = new IncomingMigration(
        host.ctx,
        b,
        host.arrived,
        b.inPlace === true && host.cprReady(b.guest.guestId),
      );
      host.addIncoming(m);
      try {
        await m.prepare();
      } catch (e) {
        host.incoming.delete(b.migrationId);
        throw e;
      }
      reply.code(201);
      return m.status();
    },
  );

  app.get(
    "/v1/incoming/:migrationId",
    {
      schema: {
        tags,
        params: MigrationParams,
        querystring: IncomingQuery,
        response: { 200: IncomingStatusSchema, ...errorAnswers(404) },
      },
    },
    async (req) => {
      const m = host.incomingOf(req.params.migrationId);
      // Only the orchestrator renews: an observer's reads must not keep an abandoned incoming alive.
      if (req.query.renew) m.renewLease();
      const st = m.status();
      if (m.qemu?.isRunning && m.qemu.hasQmp)
        st.qemuStatus = (await m.qemu.qmp.queryStatus().catch(() => null))?.status ?? null;
      return st;
    },
  );

  // The destination's RAM file digested once the load completed and before finish (-S: it
  // never ran): the orchestrator compares it with the source's (ram-digest.ts).
  app.get(
    "/v1/incoming/:migrationId/ram-digest",
    {
      schema: {
        tags,
        params: MigrationParams,
        response: { 200: RamDigestSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req) => {
      const m = host.incomingOf(req.params.migrationId);
      const q = m.qemu;
      if (m.req.mode !== "precopy" || m.state !== "listening" || !q?.isRunning)
        throw IncomingErrors.notFrozen(m.migrationId, `${m.req.mode}, ${m.state}`);
      const [run, mig] = await Promise.all([q.qmp.queryStatus(), q.qmp.queryMigrate()]);
      if (run.running || mig.status !== "completed")
        throw IncomingErrors.notFrozen(m.migrationId, `QEMU ${run.status}, load ${mig.status}`);
      return digestRamFile(q.poolFile);
    },
  );

  app.post(
    "/v1/incoming/:migrationId/finish",
    {
      schema: {
        tags,
        params: MigrationParams,
        body: FinishIncomingBody,
        response: { 200: IncomingStatusSchema, ...errorAnswers(404, 409, 502, 504) },
      },
    },
    async (req) => {
      const m = host.incomingOf(req.params.migrationId);
      await m.finish(req.body);
      return m.status();
    },
  );

  // Post-copy: the source is paused before the switch (pause-before-switchover), so its
  // serial logs are final; their lines since arming are appended here before it continues.
  app.post(
    "/v1/incoming/:migrationId/serial-logs",
    {
      schema: {
        tags,
        params: MigrationParams,
        response: { 200: ContinuedLogsSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => host.incomingOf(req.params.migrationId).continueLogs(),
  );

  app.delete(
    "/v1/incoming/:migrationId",
    {
      schema: {
        tags,
        params: MigrationParams,
        response: { 200: IncomingStatusSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => {
      const m = host.incomingOf(req.params.migrationId);
      await m.abort();
      return m.status();
    },
  );
};
