/** Migrations: a tenant sees those of its own guests. */
import { type ApiPlugin, answers, visibleTenant } from "../plugin.ts";
import { MigrationList, MigrationListQuery } from "../schemas/migrations.ts";

export const migrationRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.get(
    "/api/migrations",
    { schema: { querystring: MigrationListQuery, response: answers({ 200: MigrationList }) } },
    async (req) => {
      const rows = await c.repos.migrations.list({
        tenant: visibleTenant(req),
        status: req.query.status,
        limit: req.query.limit ?? 100,
      });
      // Running ones with the provider's live figures: the executor stores progress only at its
      // polls, and an instant handover may start and end between two of them. (The leader's
      // provider drives the moves; a follower shows what the store has.)
      // A live figure shown is stored too (forward only): once the move ends, the next request
      // finds it settled by the provider but not yet by the executor, and shows the store,
      // which must not be behind what was shown.
      const live = new Map<string, { progress: number; remainingBytes: number; etaSeconds: number }>();
      if (c.leader.isLeader) {
        for (const m of rows) {
          if (m.status !== "running") continue;
          const p = await c.provider.migration(m.id).catch(() => undefined);
          if (p?.status !== "running") continue;
          live.set(m.id, p);
          if (p.progress > m.progress) {
            const detail = { remainingBytes: p.remainingBytes, etaSeconds: p.etaSeconds };
            await c.leader
              .fenced((tx) =>
                tx.migrations.recordProgress(m.id, { status: "running", progress: p.progress, detail }),
              )
              .catch((err: unknown) =>
                req.log.warn({ err, migration: m.id }, "could not store live progress"),
              );
          }
        }
      }
      return rows.map((m) => {
        const now = live.get(m.id);
        return {
          id: m.id,
          guest: m.guest,
          tenant: m.tenant,
          from: m.from,
          to: m.to,
          mechanism: m.mechanism,
          status: m.status,
          progress: Math.max(m.progress, now?.progress ?? 0),
          detail: now ? { remainingBytes: now.remainingBytes, etaSeconds: now.etaSeconds } : { ...m.detail },
          plan: m.plan,
          startedAt: m.startedAt,
          finishedAt: m.finishedAt,
          error: m.error,
        };
      });
    },
  );
};
