/** What a provider says about placement: told by the rental, or discovered (with how). */
import type { PlacementSource } from "./evidence.ts";

/** One host VM's discovered placement, as the API and dashboard show it. */
export interface PlacementEntry {
  readonly hostVm: string;
  readonly server: string | undefined;
  readonly source: PlacementSource | undefined;
  readonly confidence: number;
  /** When the evidence that placed it was taken (seconds, the rental's clock). */
  readonly at: number | undefined;
  readonly conflict: boolean;
}

export interface PlacementReport {
  /** discovered: the provider hides placement and this map is what discovery found. */
  readonly mode: "told" | "discovered";
  readonly refreshedAt: number | undefined;
  readonly entries: readonly PlacementEntry[];
}
