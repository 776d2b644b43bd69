/** A QMP passthrough for operators and tests; errors come back with QEMU's own text (502). */
import { errorAnswers, GuestParams, QmpBody, QmpResultSchema } from "../../api-types.ts";
import { conflict, type RoutePlugin } from "../../http.ts";
import type { HostVm } from "../state.ts";

/** What this resource answers when it cannot do what was asked (besides 400, 401, 404, 500). */
const QmpErrors = {
  /** 409: nothing to pass the command to. */
  noQemu: (id: string) => conflict(`guest ${id} has no running QEMU`),
};
// 502 qmp_error: QEMU refused the command (its class and text in the answer).

export const qmpRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  app.post(
    "/v1/guests/:guestId/qmp",
    {
      schema: {
        tags: ["qmp"],
        params: GuestParams,
        body: QmpBody,
        response: { 200: QmpResultSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req) => {
      const g = host.guestOf(req.params.guestId);
      if (!g.qemu?.isRunning) throw QmpErrors.noQemu(g.guestId);
      return { return: await g.qemu.qmp.execute(req.body.execute, req.body.arguments) };
    },
  );
};
