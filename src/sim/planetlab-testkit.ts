/**
 * For tests that need real PlanetLab days (found as the loader finds them:
 * $NESTCLOUD_PLANETLAB_DIR, ../shared/data/planetlab, ./data/planetlab). A fresh clone has
 * none: such tests are skipped, with the reason in the test report. CI has them and sets
 * NESTCLOUD_REQUIRE_PLANETLAB=1: then a missing day fails the test instead of skipping it.
 * Tests only; not exported from the module's index.
 *
 *   const real = realPlanetlabDays("20110303");
 *   test("...", { skip: real.skip }, () => {
 *     real.assertPresent();
 *     ...
 *   });
 */
import { TraceError } from "./errors.ts";
import { planetlabRoots, resolvePlanetlabFolder } from "./planetlab.ts";

export const REQUIRE_PLANETLAB_ENV = "NESTCLOUD_REQUIRE_PLANETLAB";

export interface RealPlanetlabDays {
  /** For test()/describe() options: why the test is skipped, or undefined when it runs. */
  readonly skip: string | undefined;
  /** The days' folders, by day name (only those found). */
  readonly folders: Readonly<Record<string, string>>;
  /** Throws when a day is missing (reached only with NESTCLOUD_REQUIRE_PLANETLAB=1). */
  assertPresent(): void;
}

export function realPlanetlabDays(...days: string[]): RealPlanetlabDays {
  const folders: Record<string, string> = {};
  const missing: string[] = [];
  for (const day of days) {
    try {
      folders[day] = resolvePlanetlabFolder(day);
    } catch (e) {
      if (!(e instanceof TraceError)) throw e;
      missing.push(day);
    }
  }
  const where = `under ${planetlabRoots().join(", ")}`;
  const absent =
    missing.length === 0
      ? undefined
      : `PlanetLab day${missing.length > 1 ? "s" : ""} ${missing.join(", ")} not found ${where}`;
  const required = process.env[REQUIRE_PLANETLAB_ENV] === "1";
  return {
    skip:
      absent !== undefined && !required
        ? `${absent} (set NESTCLOUD_PLANETLAB_DIR to a folder of PlanetLab days; see README, "PlanetLab traces")`
        : undefined,
    folders,
    assertPresent() {
      if (absent !== undefined)
        throw new Error(
          `${REQUIRE_PLANETLAB_ENV}=1 and ${absent}: this run must have the real PlanetLab days`,
        );
    },
  };
}
