/** An in-process controller on the simulated cloud, in manual automation, with two tenant tokens. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { type RunningController, runController } from "../../src/controller/index.ts";
import { api, until } from "./controller-process.ts";

export interface TenantController {
  readonly c: RunningController;
  readonly dir: string;
  readonly acme: string;
  readonly globex: string;
  close(): Promise<void>;
}

export async function startTenantController(prefix: string): Promise<TenantController> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const c = await runController({
    provider: "sim",
    port: 0,
    dataDir: dir,
    speed: 240,
    log: pino({ level: "silent" }),
  });
  const call = async (method: string, path: string, body?: unknown) =>
    (await api({ url: c.url, token: c.adminToken }, method, path, body)).body;
  // Plans wait for approval unless a test says otherwise.
  await call("PUT", "/api/settings", { automation: "manual" });
  const acme = (await call("POST", "/api/tokens", { role: "tenant", tenant: "acme" })).token as string;
  const globex = (await call("POST", "/api/tokens", { role: "tenant", tenant: "globex" })).token as string;
  await until("guests adopted", async () => ((await call("GET", "/api/vms")).length > 0 ? true : undefined));
  return {
    c,
    dir,
    acme,
    globex,
    async close() {
      await c.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
