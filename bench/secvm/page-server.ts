/**
 * The remote channel's page server for bench:secvm, in its own process as a server agent runs
 * it: serves one guest's RAM file over TLS to security VMs whose certificates name the guest.
 * Usage: tsx bench/secvm/page-server.ts <ram file> <guest id> <credential folder>
 * (the folder holds ca-cert.pem, cert.pem, key.pem). Prints "listening 127.0.0.1:<port>".
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { securityVmClient } from "../../src/monitor/channel/index.ts";
import { openRamFile, PageServer } from "../../src/vmi/index.ts";

const [ramFile, guest, dir] = process.argv.slice(2);
if (!ramFile || !guest || !dir) {
  process.stderr.write("usage: page-server.ts <ram file> <guest id> <credential folder>\n");
  process.exit(2);
}
const ram = openRamFile(ramFile);
const server = new PageServer({
  clients: [],
  guests: new Map([[guest, ram.memory]]),
  tls: {
    ca: readFileSync(join(dir, "ca-cert.pem"), "utf8"),
    cert: readFileSync(join(dir, "cert.pem"), "utf8"),
    key: readFileSync(join(dir, "key.pem"), "utf8"),
    identify: securityVmClient,
  },
});
const { host, port } = await server.listen();
process.stdout.write(`listening ${host}:${port}\n`);
const stop = async () => {
  await server.close();
  ram.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
