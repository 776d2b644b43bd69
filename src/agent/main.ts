/**
 * Agent process entry: `node bin/nestcloud-agent.js --config <file.json>` runs it (with
 * `secvm-service`, the bin runs a security VM's service instead: agent/secvm/entry.ts), built
 * (dist/agent/main.js) or through tsx (the testbed starts it inside a server's namespace).
 * Logs JSON lines (pino) to stdout, writes <readyFile> = {url, pid} once listening, stops
 * its guests on SIGTERM/SIGINT.
 */
import { renameSync, writeFileSync } from "node:fs";
import pino from "pino";
import { keepQemusOnExit, raiseControlPriority } from "../qemu/index.ts";
import { ServerAgentClient } from "./client.ts";
import { loadAgentConfig } from "./config.ts";
import { buildHostVmAgent } from "./hostvm-agent.ts";
import type { App } from "./http.ts";
import { buildServerAgent } from "./server-agent.ts";
import { loadOrCreateToken } from "./token.ts";

/**
 * Listens on the configured port, else on the one a supervisor asks for after a restart
 * (NESTCLOUD_AGENT_PORT: the predecessor's, so that everyone holding its URL reaches this
 * agent), else on any; a requested port that is taken falls back to any.
 */
async function listen(app: App, host: string, port: number | undefined): Promise<void> {
  const wanted = port ?? Number(process.env.NESTCLOUD_AGENT_PORT ?? 0);
  try {
    await app.listen({ host, port: Number.isInteger(wanted) && wanted > 0 ? wanted : 0 });
  } catch (e) {
    if (port !== undefined || (e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    app.log.warn({ port: wanted }, "the predecessor's port is taken: listening on another");
    await app.listen({ host, port: 0 });
  }
}

/** EX_TEMPFAIL: not a clean exit, so that the supervisor restarts the agent. */
const RESTART_EXIT_CODE = 75;

async function run(argv: string[]): Promise<void> {
  const i = argv.indexOf("--config");
  if (i < 0 || !argv[i + 1]) throw new Error("usage: main.ts --config <agent-config.json>");
  const cfg = loadAgentConfig(argv[i + 1]);
  // The agent answers within a guest's pause (handover hops, QMP events), whatever its
  // guests' vCPUs do: it runs above them, and starts them at its original priority.
  const priority = raiseControlPriority();
  const token = loadOrCreateToken(cfg.tokenFile);
  const name =
    cfg.role === "server" ? `server-agent ${cfg.server}` : `hostvm-agent ${cfg.server}/${cfg.hostVm}`;
  const logger = pino({ name, level: process.env.NESTCLOUD_LOG_LEVEL ?? "info" });

  let app: App;
  let shutdown = async () => {};
  if (cfg.role === "server") {
    app = buildServerAgent(cfg, token, logger);
  } else {
    // A crash must not take the guests with it: the supervisor restarts this agent and the
    // new one adopts them (a graceful stop still stops them, see shutdown).
    keepQemusOnExit();
    const agent = buildHostVmAgent(cfg, token, logger);
    await agent.recover();
    app = agent.app;
    shutdown = agent.shutdown;
    // Rejuvenation: leave with a failure code so that the supervisor starts a fresh agent
    // at once; the port is closed first so that the successor gets it back.
    agent.allowRestart(() => {
      logger.info("restart asked: exiting, the guests' QEMUs stay");
      void agent.app.close().finally(() => process.exit(RESTART_EXIT_CODE));
    });
  }
  await listen(app, cfg.address, cfg.port);
  const addr = app.server.address();
  if (!addr || typeof addr === "string") throw new Error("agent has no TCP address");
  const url = `http://${cfg.address}:${addr.port}`;

  if (cfg.role === "hostvm") {
    // Registration tells the server agent (the handover broker) where this host VM's agent is.
    const server = new ServerAgentClient(cfg.serverAgentUrl, token, { timeoutMs: 5000 });
    for (let attempt = 0; ; attempt++) {
      try {
        await server.register(cfg.hostVm, url, process.pid);
        break;
      } catch (e) {
        if (attempt >= 20)
          throw new Error(`cannot register with server agent ${cfg.serverAgentUrl}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
  const tmp = `${cfg.readyFile}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ url, pid: process.pid }), { mode: 0o600 });
  renameSync(tmp, cfg.readyFile);
  logger.info({ url, pid: process.pid, nice: priority }, `${name} ready`);

  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${sig}: stopping`);
    await shutdown().catch((e) => logger.error({ err: e }, "shutdown failed"));
    await app.close().catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

// (`secvm-service`, a security VM's service, has its own entry: agent/secvm/entry.ts.)
run(process.argv).catch((e) => {
  process.stderr.write(`agent: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
