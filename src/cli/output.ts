/**
 * Output helpers shared by the commands: flags with fixed values, percents, times, files
 * written. Light on purpose: controller-commands.ts registers flags with `choice` and the API
 * client (client.ts) formats with the rest, so this module imports nothing heavy (no
 * simulator, no controller, no table or progress packages; see results.ts for those).
 */
import { UsageError } from "./usage.ts";

/** `--flag value` must be one of `allowed`: a usage error listing them otherwise. */
export function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value))
    throw new UsageError(`--${flag} ${value}: expected one of ${allowed.join(", ")}`);
  return value as T;
}

/** A commander option parser that accepts only `allowed` (checked before the command runs). */
export function choice<T extends string>(flag: string, allowed: readonly T[]): (value: string) => T {
  return (value) => oneOf(flag, value, allowed);
}

/** A fraction as a percent: `percent(1)` is "100 %", `percent(0.0123, 2)` "1.23 %". */
export function percent(fraction: number, digits = 0): string {
  return `${(fraction * 100).toFixed(digits)} %`;
}

/** Unix seconds as a UTC date and time, e.g. "2025-03-01 14:05:09Z". */
export function wallTime(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19)}Z`;
}

/**
 * Seconds on a simulated clock (since the simulated world's epoch) as the simulated day and
 * time of day: 8 h is "day 1 08:00:00", 90,061 s "day 2 01:01:01".
 */
export function simulatedTime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number) => String(n).padStart(2, "0");
  const day = Math.floor(s / 86400) + 1;
  const t = s % 86400;
  return `day ${day} ${two(Math.floor(t / 3600))}:${two(Math.floor((t % 3600) / 60))}:${two(t % 60)}`;
}

/** A time on a provider's clock (see the API's /api/overview `clock`). */
export function providerTime(clock: "wall" | "simulated", seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "";
  return clock === "simulated" ? simulatedTime(seconds) : wallTime(seconds);
}

/** Names a file the command wrote, on stderr (stdout stays the table or JSON). */
export function wrote(file: string): void {
  process.stderr.write(`wrote ${file}\n`);
}
