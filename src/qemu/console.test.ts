// SerialConsole against a fake guest shell on a unix socket: echoes typed input like a
// terminal, interleaves heartbeat records, and answers the marker protocol.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConsoleTimeoutError, SerialConsole } from "./console.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-console-test-"));
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function fakeGuest(onCommand: (cmd: string, sock: Socket) => string | null): Promise<string> {
  const path = join(dir, `s${n++}.sock`);
  const server = createServer((sock) => {
    sock.on("error", () => {});
    let buf = "";
    sock.on("data", (d) => {
      // Like a tty line discipline: Ctrl-C interrupts and discards the pending input.
      buf += d.toString("latin1");
      if (buf.includes("\x03")) buf = buf.slice(buf.lastIndexOf("\x03") + 1);
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        sock.write(`\x1b[6n${line}\r\n`); // terminal echo, with a line-editor escape
        const m = /^echo __NC""S_(\w+); (.*); echo __NC""E_\w+ \$\?$/.exec(line);
        if (m) {
          const out = onCommand(m[2], sock);
          if (out !== null) sock.write(`__NCS_${m[1]}\r\n${out}__NCE_${m[1]} 0\r\n/ # `);
        }
        nl = buf.indexOf("\n");
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return path;
}

test("run returns the output between markers with async records cut out", async () => {
  const path = await fakeGuest((cmd) =>
    cmd === "ps"
      ? "PID USER\r\n1 rootNESTCLOUD-HB 7 8.01\r\n init\r\nNESTCLOUD-VERIFY ok 3\r\n2 root sh\r\n"
      : "",
  );
  const con = await SerialConsole.connect(path);
  const r = await con.run("ps", 2000);
  assert.equal(r.exitCode, 0);
  assert.equal(r.output, "PID USER\n1 root init\n2 root sh");
  con.close();
});

test("waitForLine sees new lines, strips escapes, and can search history", async () => {
  const path = await fakeGuest(() => "");
  const con = await SerialConsole.connect(path);
  const waiting = con.waitForLine(/NESTCLOUD-READY (\S+)/, 2000);
  con.write("\x1b[?7lNESTCLOUD-READY boot-1\n"); // echoed back by the fake terminal
  const hit = await waiting;
  assert.equal(hit.match[1], "boot-1");
  assert.equal(hit.line, "NESTCLOUD-READY boot-1");
  const again = await con.waitForLine(/READY boot-1/, 10, { includeHistory: true });
  assert.equal(again.line, "NESTCLOUD-READY boot-1");
  await assert.rejects(con.waitForLine(/never/, 30), ConsoleTimeoutError);
  con.close();
});

test("run times out with what was captured, sends Ctrl-C, and the next command still works", async () => {
  let ctrlC = false;
  const path = await fakeGuest((cmd, sock) => {
    if (cmd === "sleep 100") {
      sock.once("data", (d) => {
        if (d.includes(3)) ctrlC = true;
      });
      return null;
    }
    return "ok\r\n";
  });
  const con = await SerialConsole.connect(path);
  await assert.rejects(con.run("sleep 100", 100), (e: unknown) => {
    assert.ok(e instanceof ConsoleTimeoutError);
    assert.match(e.message, /sleep 100.*100 ms/);
    return true;
  });
  const r = await con.run("echo ok", 2000);
  assert.equal(r.output, "ok");
  assert.ok(ctrlC);
  con.close();
});

test("commands with control characters are refused", async () => {
  const path = await fakeGuest(() => "");
  const con = await SerialConsole.connect(path);
  await assert.rejects(con.run("ls\nreboot"), /one line/);
  con.close();
});
