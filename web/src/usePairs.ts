/**
 * Each (security VM, target) pair's channel for the map: loaded per security VM, then kept
 * current from the event stream (`secvm.channel` switches it in place); polled only while the
 * stream is down.
 */
import { useCallback, useEffect, useRef, useState } from "react";
import type { Api } from "./api.ts";
import { channelSwitched, type PairView, pairsLoaded } from "./monitoring.ts";
import type { SecurityVmPair } from "./types.ts";
import type { StreamListener } from "./useCloud.ts";

const POLL_MS = 5000;

export function usePairs(
  api: Api,
  securityVms: readonly string[],
  subscribe: (l: StreamListener) => () => void,
  live: boolean,
): ReadonlyMap<string, PairView> {
  const [pairs, setPairs] = useState<ReadonlyMap<string, PairView>>(new Map());
  const key = [...securityVms].sort().join(" ");
  const ids = useRef(securityVms);
  ids.current = securityVms;

  const load = useCallback(async () => {
    const started = Date.now();
    const loaded = new Map<string, SecurityVmPair[]>();
    await Promise.all(
      ids.current.map(async (id) => {
        // A security VM deleted meanwhile (404) has no pairs.
        const rows = await api
          .get<SecurityVmPair[]>(`/api/security-vms/${encodeURIComponent(id)}/channels`)
          .catch(() => []);
        loaded.set(id, rows);
      }),
    );
    setPairs((seen) => pairsLoaded(loaded, seen, started));
  }, [api]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: the ids' key decides when to load again
  useEffect(() => {
    void load();
  }, [load, key]);

  useEffect(
    () =>
      subscribe((kind, data) => {
        if (kind === "secvm.channel") setPairs((p) => channelSwitched(p, data, Date.now()));
        else if (kind === "reset") void load();
      }),
    [subscribe, load],
  );

  useEffect(() => {
    if (live) return;
    const t = window.setInterval(() => void load(), POLL_MS);
    return () => window.clearInterval(t);
  }, [live, load]);

  return pairs;
}
