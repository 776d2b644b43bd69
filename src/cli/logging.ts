/**
 * The controller's log: human-readable lines on a terminal, JSON lines (pino's own format,
 * for log shippers) when asked or when stdout is not a terminal.
 */
import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import { LOG_FORMATS, type LogFormat } from "./choices.ts";
import { oneOf } from "./output.ts";

export { LOG_FORMATS, type LogFormat };

/** `--log-format` (checked by commander already when given on the command line). */
export function parseLogFormat(v: string): LogFormat {
  return oneOf("log-format", v, LOG_FORMATS);
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
