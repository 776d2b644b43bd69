/**
 * The controller's log: human-readable lines on a terminal, JSON lines (pino's own format,
 * for log shippers) when asked or when stdout is not a terminal.
 */
import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import { UserError } from "../sim/index.ts";

export const LOG_FORMATS = ["auto", "pretty", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function parseLogFormat(v: string): LogFormat {
  if (!(LOG_FORMATS as readonly string[]).includes(v))
    throw new UserError(`--log-format ${v}: expected one of ${LOG_FORMATS.join(", ")}`);
  return v as LogFormat;
}

export function controllerLogger(format: LogFormat, level = process.env.NESTCLOUD_LOG ?? "info"): Logger {
  const tty = Boolean(process.stdout.isTTY);
  if (format === "json" || (format === "auto" && !tty)) return pino({ level });
  return pino(
    { level },
    pretty({
      colorize: tty,
      translateTime: "SYS:HH:MM:ss",
      ignore: "pid,hostname",
      singleLine: true,
      sync: true,
      destination: 1,
    }),
  );
}
