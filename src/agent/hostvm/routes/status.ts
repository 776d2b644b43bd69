/** The host-VM agent's status: its guests, migrations, and what it adopted at start-up. */
import { errorAnswers, HostVmStatusSchema } from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { HostVm } from "../state.ts";

export const statusRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  app.get(
    "/v1/status",
    { schema: { tags: ["status"], response: { 200: HostVmStatusSchema, ...errorAnswers() } } },
    async () => host.status(),
  );
};
