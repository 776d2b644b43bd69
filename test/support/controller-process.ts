/** A controller in its own process (`nestcloud up`), so tests can kill -9 it. */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const bin = resolve(import.meta.dirname, "../../bin/nestcloud.js");

export interface ControllerProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly token: string;
  readonly output: () => string;
}

export async function startControllerProcess(
  args: string[],
  timeoutMs = 60_000,
  env: Record<string, string> = {},
): Promise<ControllerProcess> {
  const child = spawn(process.execPath, [bin, "up", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NESTCLOUD_LOG: "warn", ...env },
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const url = /controller on (http:\/\/\S+)/.exec(out)?.[1];
    // Printed once, when made; on a restart the controller names the file that keeps it.
    const printed = /admin token: (nc_\S+)/.exec(out)?.[1];
    const kept = /admin token: unchanged, kept in (\S+)/.exec(out)?.[1];
    const token = printed ?? (kept ? readFileSync(kept, "utf8").trim() : undefined);
    if (url && token) return { child, url, token, output: () => out };
    if (child.exitCode !== null) throw new Error(`controller exited with ${child.exitCode}:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`controller did not start:\n${out}`);
}

export async function killHard(p: ControllerProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGKILL");
  await exited;
}

export async function stopGently(p: ControllerProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

export async function api(
  p: { url: string; token: string },
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const res = await fetch(p.url + path, {
    method,
    headers: {
      authorization: `Bearer ${p.token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  ms = 60_000,
  every = 150,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
}
