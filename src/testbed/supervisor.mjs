// The supervisor of one host VM's agent on a testbed: what systemd is inside a real host
// VM. The testbed starts it (in the server's network namespace, placed in the host VM's
// cgroup slice) instead of the agent; it starts the agent as its child, so the agent
// inherits exactly that namespace and slice, and starts it again whenever it dies of
// anything but a clean exit (SIGKILL, a crash), after a short back-off. The restarted
// agent adopts the QEMUs its predecessor left running.
//
//   node supervisor.mjs --record <file> --ready <file> -- <agent argv...>
//
// <record> is rewritten (atomically) at every start: {pid, startTime, startedAt, restarts,
// supervisorPid, lastExit}; the testbed reads it to find (and stop, by pid and start time)
// the current agent. <ready> is the agent's own ready file ({url, pid}): on a restart the
// agent is asked, through NESTCLOUD_AGENT_PORT, to listen on the port its predecessor used,
// so that everyone holding its URL reaches it again.
//
// SIGTERM/SIGINT: stop supervising, pass SIGTERM to the agent (it stops its guests), wait
// for it (SIGKILL after 20 s), exit. A clean exit (code 0) of the agent ends the supervisor
// too (like systemd's Restart=on-failure).
//
// Plain JavaScript with Node built-ins only, on purpose: it runs in every slice for the
// slice's whole life, and the TypeScript loader would triple its memory and start-up time.
import { spawn } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;
/** An agent that ran this long before dying gets restarted at once again (no back-off). */
const HEALTHY_MS = 10_000;
const STOP_GRACE_MS = 20_000;

function parseArgs(argv) {
  const sep = argv.indexOf("--");
  const own = sep < 0 ? argv : argv.slice(0, sep);
  const child = sep < 0 ? [] : argv.slice(sep + 1);
  const opt = (name) => {
    const i = own.indexOf(name);
    return i >= 0 ? own[i + 1] : undefined;
  };
  const record = opt("--record");
  const ready = opt("--ready");
  if (!record || !ready || child.length === 0) {
    throw new Error("usage: supervisor.mjs --record <file> --ready <file> -- <argv...>");
  }
  return { record, ready, child };
}

function log(level, msg, extra = {}) {
  const levels = { info: 30, warn: 40, error: 50 };
  process.stderr.write(
    `${JSON.stringify({ level: levels[level], time: Date.now(), pid: process.pid, name: "supervisor", msg, ...extra })}\n`,
  );
}

function startTimeOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[22 - 3]);
  } catch {
    return null;
  }
}

function writeRecord(file, rec) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** The port the previous agent listened on (from its ready file), if any. */
function previousPort(readyFile) {
  try {
    const { url } = JSON.parse(readFileSync(readyFile, "utf8"));
    const port = Number(new URL(url).port);
    return Number.isInteger(port) && port > 0 ? port : null;
  } catch {
    return null;
  }
}

const { record, ready, child: argv } = parseArgs(process.argv.slice(2));
let current = null;
let stopping = false;
let restarts = 0;
let delay = MIN_DELAY_MS;
let lastExit = null;
let timer = null;

function start() {
  timer = null;
  if (stopping) return;
  const env = { ...process.env };
  const port = restarts > 0 ? previousPort(ready) : null;
  if (port) env.NESTCLOUD_AGENT_PORT = String(port);
  const startedAt = Date.now();
  const c = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "inherit", "inherit"], env, shell: false });
  current = c;
  if (c.pid === undefined) {
    // Could not even be spawned (the error event says why): try again later.
    c.once("error", (e) => log("error", `cannot start the agent: ${e.message}`));
    current = null;
    restarts++;
    delay = Math.min(delay * 2, MAX_DELAY_MS);
    timer = setTimeout(start, delay);
    return;
  }
  writeRecord(record, {
    pid: c.pid,
    startTime: startTimeOf(c.pid),
    startedAt: new Date(startedAt).toISOString(),
    restarts,
    supervisorPid: process.pid,
    lastExit,
  });
  log("info", restarts === 0 ? "agent started" : "agent restarted", { agentPid: c.pid, restarts, port });
  c.once("exit", (code, signal) => {
    current = null;
    lastExit = { code, signal, at: new Date().toISOString() };
    if (stopping) {
      log("info", "agent stopped", { code, signal });
      process.exit(0);
    }
    if (code === 0) {
      log("info", "agent exited cleanly: not restarted", { code });
      process.exit(0);
    }
    delay = Date.now() - startedAt >= HEALTHY_MS ? MIN_DELAY_MS : Math.min(delay * 2, MAX_DELAY_MS);
    restarts++;
    log("warn", `agent died (${signal ?? `exit code ${code}`}); restarting in ${delay} ms`, { restarts });
    timer = setTimeout(start, delay);
  });
}

function stop(sig) {
  if (stopping) return;
  stopping = true;
  log("info", `${sig}: stopping the agent`);
  if (timer) clearTimeout(timer);
  if (!current) process.exit(0);
  current.kill("SIGTERM");
  setTimeout(() => {
    log("warn", `agent still running ${STOP_GRACE_MS} ms after SIGTERM: SIGKILL`);
    current?.kill("SIGKILL");
  }, STOP_GRACE_MS).unref();
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGHUP", () => {});
start();
