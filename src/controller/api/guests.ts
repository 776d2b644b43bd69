/** Guests as the API shows them, and the ids a new guest may take (vms and security VMs). */
import type { FastifyRequest } from "fastify";
import { mayAccess } from "../auth.ts";
import { type Controller, guestIdUnavailable } from "../controller.ts";
import { ApiError, notFound } from "../errors.ts";
import type { StoredGuest } from "../store/repositories/index.ts";
import type { Guest } from "./schemas/vms.ts";

/** A guest with where it runs (server) and its load at the last audit, from the views. */
export function guestView(c: Controller, g: StoredGuest): Guest {
  return {
    id: g.id,
    tenant: g.tenant,
    vcpus: g.vcpus,
    mipsPerVcpu: g.mipsPerVcpu,
    memoryMiB: g.memoryMiB,
    hostVm: g.hostVm,
    server: c.serverOf(g.hostVm),
    powerState: g.powerState,
    automation: g.automation,
    role: g.role,
    targets: [...g.targets],
    cpu: c.currentCpu(g.id),
  };
}

/** The guest, if this request may see it; another tenant's guest does not exist for it. */
export async function loadGuest(c: Controller, req: FastifyRequest, id: string): Promise<StoredGuest> {
  const g = await c.repos.guests.get(id);
  if (!g || !mayAccess(req.principal, g.tenant)) throw notFound("guest VM", id);
  return g;
}

/**
 * Refuses an id a new guest cannot take. Ids are one namespace for all tenants, so a
 * tenant learns only that an id it cannot see is unavailable — the same answer for another
 * tenant's guest, a retired id, or one being created — never whose it is.
 */
export async function claimableGuestId(c: Controller, req: FastifyRequest, id: string): Promise<void> {
  const st = await c.guestIdStatus(id);
  if (st.kind === "free") return;
  if (st.kind === "taken" && mayAccess(req.principal, st.tenant))
    throw new ApiError(409, `guest VM ${id} exists already`);
  if (st.kind === "retired" && req.principal.role === "admin")
    throw new ApiError(409, `guest VM id ${id} belonged to a deleted guest; ids are never reused`);
  throw new ApiError(409, guestIdUnavailable(id));
}
