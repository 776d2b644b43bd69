/**
 * Outgoing migrations (the source side): start one towards a prepared destination, follow
 * it (long-poll on its phase), cancel, continue past pre-switchover, switch to post-copy,
 * and the orchestrator's confirm. See outgoing.ts for what each does to the guest.
 */

import { digestRamFile } from "../../../qemu/index.ts";
import {
  CancelBody,
  ConfirmBody,
  errorAnswers,
  GuestParams,
  MigrationParams,
  OutgoingStatusSchema,
  RamDigestSchema,
  StartOutgoingBody,
  WaitQuery,
} from "../../api-types.ts";
import { conflict, type RoutePlugin } from "../../http.ts";
import { OutgoingMigration } from "../outgoing.ts";
import type { HostVm } from "../state.ts";

/** What this resource answers when it cannot do what was asked (besides 400, 401, 404, 500). */
const OutgoingErrors = {
  /** 409: only a running guest can be migrated. */
  notRunning: (id: string, state: string) => conflict(`guest ${id} is ${state}, not running`),
  /** 409: the migration id is taken. */
  exists: (id: string) => conflict(`migration ${id} exists`),
  /** 409: the source's RAM is not frozen (only a completed source, paused, can be digested). */
  notFrozen: (id: string, why: string) =>
    conflict(`migration ${id}: the source's RAM is not frozen (${why})`),
};
// Further 409s come from the migration itself (cancel after switchover: cancel_refused;
// continue, post-copy or confirm in the wrong phase), 502 from QEMU.

export const outgoingRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  const tags = ["migrations-out"];
  const answers = { 200: OutgoingStatusSchema, ...errorAnswers(404, 409, 502) };

  app.post(
    "/v1/guests/:guestId/outgoing",
    {
      schema: {
        tags,
        params: GuestParams,
        body: StartOutgoingBody,
        response: { 202: OutgoingStatusSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req, reply) => {
      const g = host.guestOf(req.params.guestId);
      if (g.state !== "running") throw OutgoingErrors.notRunning(g.guestId, g.state);
      host.assertNotMigrating(g.guestId);
      if (host.outgoing.has(req.body.migrationId)) throw OutgoingErrors.exists(req.body.migrationId);
      // Keystrokes QEMU has not read yet would leave with the source: let it read them first;
      // the consoles' relay makes its sessions at the destination meanwhile (made before broken).
      const release = await host.consoleDrain(g.guestId, req.body.destination?.url);
      let m: OutgoingMigration;
      try {
        if (g.state !== "running") throw OutgoingErrors.notRunning(g.guestId, g.state);
        host.assertNotMigrating(g.guestId);
        if (host.outgoing.has(req.body.migrationId)) throw OutgoingErrors.exists(req.body.migrationId);
        m = new OutgoingMigration(host.ctx, g, req.body, host.onGone);
        host.addOutgoing(m);
        // Registered first: no security VM opens a disk view of the guest from here on.
        await host.beforeDeparture(g.guestId);
        m.start();
      } finally {
        release();
      }
      await m.changes.until(() => m.phase !== "running", req.body.waitMs ?? 0);
      reply.code(202);
      return m.status();
    },
  );

  app.get(
    "/v1/outgoing/:migrationId",
    { schema: { tags, params: MigrationParams, querystring: WaitQuery, response: answers } },
    async (req) => {
      const m = host.outgoingOf(req.params.migrationId);
      const { waitMs, unless } = req.query;
      if (waitMs && unless) await m.changes.until(() => m.phase !== unless, waitMs);
      return m.status();
    },
  );

  // The source's RAM file digested while the source is paused after completing (postmigrate):
  // the orchestrator compares it with the destination's before finishing (ram-digest.ts).
  app.get(
    "/v1/outgoing/:migrationId/ram-digest",
    {
      schema: {
        tags,
        params: MigrationParams,
        response: { 200: RamDigestSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req) => {
      const m = host.outgoingOf(req.params.migrationId);
      const q = m.guest.qemu;
      if (m.phase !== "completed" || !q?.isRunning) throw OutgoingErrors.notFrozen(m.migrationId, m.phase);
      const run = (await q.qmp.queryStatus()).status;
      if (run !== "postmigrate") throw OutgoingErrors.notFrozen(m.migrationId, `QEMU ${run}`);
      return digestRamFile(q.poolFile);
    },
  );

  app.post(
    "/v1/outgoing/:migrationId/cancel",
    { schema: { tags, params: MigrationParams, body: CancelBody, response: answers } },
    async (req) => {
      const m = host.outgoingOf(req.params.migrationId);
      await m.cancel(req.body.reason ?? "cancelled on request");
      return m.status();
    },
  );

  app.post(
    "/v1/outgoing/:migrationId/continue",
    { schema: { tags, params: MigrationParams, response: answers } },
    async (req) => {
      const m = host.outgoingOf(req.params.migrationId);
      await m.continueSwitchover();
      return m.status();
    },
  );

  app.post(
    "/v1/outgoing/:migrationId/postcopy",
    { schema: { tags, params: MigrationParams, response: answers } },
    async (req) => {
      const m = host.outgoingOf(req.params.migrationId);
      await m.startPostcopy();
      return m.status();
    },
  );

  app.post(
    "/v1/outgoing/:migrationId/confirm",
    { schema: { tags, params: MigrationParams, body: ConfirmBody, response: answers } },
    async (req) => {
      const m = host.outgoingOf(req.params.migrationId);
      await m.confirm(req.body.outcome);
      req.log.info({ migration: m.migrationId, outcome: req.body.outcome }, "outgoing migration confirmed");
      return m.status();
    },
  );
};
