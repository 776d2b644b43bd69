/**
 * A guest's workloads (the verify and dirty programs inside it) and its console: commands
 * run on the guest's serial shell, answered with their output and exit status.
 */
import {
  ExecBody,
  ExecResultSchema,
  errorAnswers,
  GuestParams,
  GuestStatusSchema,
  WorkloadParams,
  WorkloadSchema,
} from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { HostVm } from "../state.ts";

/** Console commands get this long unless the request says otherwise. */
const DEFAULT_EXEC_TIMEOUT_MS = 10_000;

// What this resource answers when it cannot do what was asked (besides 400, 401, 500), all
// raised by the guest itself (guest-runtime.ts): 404 no such guest; 409 not_running (the
// guest has no console now); 500 workload_failed (the program did not start in the guest).
export const workloadRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  app.post(
    "/v1/guests/:guestId/workloads",
    {
      schema: {
        tags: ["workloads"],
        params: GuestParams,
        body: WorkloadSchema,
        response: { 200: GuestStatusSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      await g.startWorkload(req.body);
      return g.status();
    },
  );

  app.delete(
    "/v1/guests/:guestId/workloads/:kind",
    {
      schema: {
        tags: ["workloads"],
        params: WorkloadParams,
        response: { 200: GuestStatusSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      await g.stopWorkload(req.params.kind);
      return g.status();
    },
  );

  app.post(
    "/v1/guests/:guestId/exec",
    {
      schema: {
        tags: ["console"],
        params: GuestParams,
        body: ExecBody,
        response: { 200: ExecResultSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) =>
      host.guestOf(req.params.guestId).exec(req.body.command, req.body.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS),
  );
};
