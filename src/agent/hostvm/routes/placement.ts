/**
 * The co-residency probe: a host VM writes a probe file named by a random nonce into its
 * server's guest-memory pool; every host VM on that server sees it there, none elsewhere.
 * The controller writes one per host VM and asks each which it sees (providers/placement).
 * Files are bounded in number, contain nothing secret, and vanish after PROBE_TTL_MS.
 */
import { closeSync, openSync, readdirSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  errorAnswers,
  NoContent,
  ProbeBody,
  ProbeParams,
  ProbesSeen,
  ProbeWritten,
} from "../../api-types.ts";
import { AgentError, type RoutePlugin } from "../../http.ts";
import type { HostVm } from "../state.ts";

const PREFIX = "placement-probe-";
const PROBE_TTL_MS = 120_000;
/** Probes one agent keeps at once (each round replaces its predecessor). */
const MAX_OWN_PROBES = 8;

export const placementRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  const pool = host.cfg.poolDir;
  const own = new Map<string, NodeJS.Timeout>();
  const remove = (nonce: string) => {
    clearTimeout(own.get(nonce));
    own.delete(nonce);
    rmSync(join(pool, `${PREFIX}${nonce}`), { force: true });
  };
  app.addHook("onClose", async () => {
    for (const n of [...own.keys()]) remove(n);
  });

  app.post(
    "/v1/placement/probes",
    {
      schema: { tags: ["placement"], body: ProbeBody, response: { 201: ProbeWritten, ...errorAnswers(409) } },
    },
    async (req, reply) => {
      const { nonce } = req.body;
      if (own.size >= MAX_OWN_PROBES) remove(own.keys().next().value!);
      let fd: number;
      try {
        // Exclusive: a nonce already there was written by someone else.
        fd = openSync(join(pool, `${PREFIX}${nonce}`), "wx", 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST")
          throw new AgentError(409, "conflict", `probe ${nonce} exists already`);
        throw e;
      }
      try {
        writeSync(fd, `${host.cfg.hostVm}\n`);
      } finally {
        closeSync(fd);
      }
      own.set(
        nonce,
        setTimeout(() => remove(nonce), PROBE_TTL_MS),
      );
      own.get(nonce)!.unref();
      return reply.code(201).send({ nonce, hostVm: host.cfg.hostVm });
    },
  );

  app.get(
    "/v1/placement/probes",
    { schema: { tags: ["placement"], response: { 200: ProbesSeen, ...errorAnswers() } } },
    async () => ({
      nonces: readdirSync(pool)
        .filter((f) => f.startsWith(PREFIX) && /^[0-9a-f]{32}$/.test(f.slice(PREFIX.length)))
        .map((f) => f.slice(PREFIX.length))
        .slice(0, 4096),
    }),
  );

  app.delete(
    "/v1/placement/probes/:nonce",
    {
      schema: {
        tags: ["placement"],
        params: ProbeParams,
        response: { 204: NoContent, ...errorAnswers(404) },
      },
    },
    async (req, reply) => {
      if (!own.has(req.params.nonce))
        throw new AgentError(404, "not_found", `no probe ${req.params.nonce} of this host VM`);
      remove(req.params.nonce);
      return reply.code(204).send(null);
    },
  );
};
