/** The cloud's settings (admin): its automation level. */
import { ADMIN, type ApiPlugin, answers } from "../plugin.ts";
import { Settings } from "../schemas/settings.ts";

export const settingsRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.get("/api/settings", { ...ADMIN, schema: { response: answers({ 200: Settings }) } }, async () => ({
    automation: await c.reconciler.cloudAutomation(),
  }));

  app.put(
    "/api/settings",
    { ...ADMIN, schema: { body: Settings, response: answers({ 200: Settings }) } },
    async (req) => {
      const value = req.body.automation;
      await c.write((tx) => tx.settings.setAutomation(value));
      return { automation: value };
    },
  );
};
