/** Security VMs: guests that watch other guests of their tenant. */
import { ApiError } from "../../errors.ts";
import { claimableGuestId, guestView } from "../guests.ts";
import { type ApiPlugin, answers, tenantOf, visibleTenant } from "../plugin.ts";
import { CreateSecurityVm } from "../schemas/security-vms.ts";
import { Guest, GuestList } from "../schemas/vms.ts";

export const securityVmRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.addHook("preHandler", async () => c.freshViews());

  app.get("/api/security-vms", { schema: { response: answers({ 200: GuestList }) } }, async (req) =>
    (await c.repos.guests.list({ role: "security", tenant: visibleTenant(req) })).map((g) => guestView(c, g)),
  );

  app.post(
    "/api/security-vms",
    { schema: { body: CreateSecurityVm, response: answers({ 201: Guest }) } },
    async (req, reply) => {
      const tenant = tenantOf(req, req.body.tenant);
      await claimableGuestId(c, req, req.body.id);
      for (const t of req.body.targets) {
        if ((await c.repos.guests.tenantOf(t)) !== tenant)
          throw new ApiError(422, `body/targets: guest VM ${t} not found for tenant ${tenant}`);
      }
      const g = await c.createGuest({
        id: req.body.id,
        tenant,
        vcpus: 1,
        mipsPerVcpu: 1000,
        memoryMiB: req.body.memoryMiB ?? 512,
        dirtyRateMiBps: 5,
        role: "security",
        targets: req.body.targets,
      });
      reply.code(201);
      return guestView(c, g);
    },
  );
};
