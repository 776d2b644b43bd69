/**
 * A guest's devices: the image of a disk and the log of a serial port, as bytes. The
 * destination of a migration to another server fetches them from the source (read-only
 * disks, which QEMU's block migration does not carry; logs, so that they continue there:
 * a post-copy takes most of a log while the source runs and the rest, `?from=` the bytes it
 * has, while the source waits before the switch); a console client replays a log after
 * reconnecting.
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import { Type } from "typebox";
import { DeviceId, errorAnswers, GuestParams } from "../../api-types.ts";
import { conflict, notFound, type RoutePlugin } from "../../http.ts";
import { diskImagePath, serialLogOf } from "../devices.ts";
import type { HostVm } from "../state.ts";

const DeviceParams = Type.Object({ guestId: GuestParams.properties.guestId, deviceId: DeviceId });
/** A log from this byte on (past its end: nothing). */
const LogQuery = Type.Object({ from: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 48 })) });
const Bytes = Type.String({ contentMediaType: "application/octet-stream", description: "raw bytes" });
/** A file streamed as the answer (the schema above describes it; streams are not serialized). */
const bytesOf = (path: string, start = 0) => createReadStream(path, { start }) as unknown as string;

/** What this resource answers when it cannot do what was asked (besides 400, 401, 500). */
const DeviceErrors = {
  /** 404: the guest has no such disk, or no such logged serial port. */
  noDisk: (g: string, d: string) => notFound(`guest ${g} has no disk ${d}`),
  noLog: (g: string, d: string) => notFound(`guest ${g} has no serial port ${d} with a log`),
  /** 409: a writable disk of a running guest changes under the reader. */
  diskInUse: (g: string, d: string) =>
    conflict(`disk ${d} of guest ${g} is writable and the guest runs: stop it first (or use a disk tap)`),
};

export const deviceRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  const tags = ["devices"];
  app.get(
    "/v1/guests/:guestId/devices/:deviceId/image",
    { schema: { tags, params: DeviceParams, response: { 200: Bytes, ...errorAnswers(404, 409) } } },
    async (req, reply) => {
      const { guestId, deviceId } = req.params;
      const g = host.guestOf(guestId);
      const path = diskImagePath(host.cfg, g.config, deviceId);
      if (!path) throw DeviceErrors.noDisk(guestId, deviceId);
      const disk = g.config.devices?.find((d) => d.id === deviceId);
      if (disk?.kind === "disk" && !disk.readOnly && g.qemu?.isRunning)
        throw DeviceErrors.diskInUse(guestId, deviceId);
      return reply.type("application/octet-stream").send(bytesOf(path));
    },
  );

  app.get(
    "/v1/guests/:guestId/devices/:deviceId/log",
    {
      schema: {
        tags,
        params: DeviceParams,
        querystring: LogQuery,
        response: { 200: Bytes, ...errorAnswers(404) },
      },
    },
    async (req, reply) => {
      const { guestId, deviceId } = req.params;
      const g = host.guestOf(guestId);
      const path = serialLogOf(host.cfg, g.config, deviceId);
      if (!path) throw DeviceErrors.noLog(guestId, deviceId);
      const from = req.query.from ?? 0;
      // QEMU creates the log when it opens the port: none yet is an empty log.
      const some = existsSync(path) && statSync(path).size > from;
      return reply.type("application/octet-stream").send(some ? bytesOf(path, from) : "");
    },
  );
};
