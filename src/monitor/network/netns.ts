// The network namespace a network monitor runs its IDS in (its TAP device and Suricata live
// there, so the guest's mirrored traffic never meets any other interface), and the processes
// started inside it: by pid, stopped by pid, never by name.
import { type ChildProcess, execFile, type StdioOptions, spawn } from "node:child_process";

/** Namespace names we make: short, safe as one argument. */
export const NETNS_RE = /^[a-z][a-z0-9-]{0,30}$/;

function ip(args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(" ")} failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

export async function createNetns(name: string): Promise<void> {
  if (!NETNS_RE.test(name)) throw new Error(`namespace name ${JSON.stringify(name)} must match ${NETNS_RE}`);
  await ip(["netns", "add", name]);
}

/** Deletes a namespace we made; one that is already gone is fine. */
export async function deleteNetns(name: string): Promise<void> {
  if (!NETNS_RE.test(name)) throw new Error(`namespace name ${JSON.stringify(name)} must match ${NETNS_RE}`);
  try {
    await ip(["netns", "delete", name]);
  } catch (e) {
    if (!(await listNetns()).includes(name)) return;
    throw e;
  }
}

export async function listNetns(): Promise<string[]> {
  const out = await ip(["netns", "list"]);
  return out
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/**
 * Starts `argv` inside namespace `ns`. `ip netns exec` enters the namespace and execs the
 * program in the same process, so the child's pid is the program's.
 */
export function spawnInNetns(ns: string, argv: readonly string[], stdio: StdioOptions): ChildProcess {
  return spawn("ip", ["netns", "exec", ns, ...argv], { stdio });
}

/** Whether a child is still running (not yet reaped). */
export const running = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

/** Stops a child we started: SIGTERM, then SIGKILL after `termMs`; resolves once it exited. */
export async function stopChild(c: ChildProcess, termMs = 5000): Promise<void> {
  if (!running(c)) return;
  const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
  c.kill("SIGTERM");
  const timer = setTimeout(() => {
    if (running(c)) c.kill("SIGKILL");
  }, termMs);
  await exited;
  clearTimeout(timer);
}
