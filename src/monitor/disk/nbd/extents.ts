// Extents of a block status map (pure): merging neighbours with the same flags, picking the
// ranges that have a flag (dirty blocks, data), and totals.

export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

/** Appends `e` to a sorted, contiguous list, merging it into the last extent when flags match. */
export function appendExtent(out: Extent[], e: Extent): void {
  const last = out[out.length - 1];
  if (last && last.offset + last.length === e.offset && last.flags === e.flags) last.length += e.length;
  else out.push({ ...e });
}

/** The extents whose flags include every bit of `mask`, neighbours merged (flags kept as mask). */
export function rangesWith(extents: readonly Extent[], mask: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) if ((e.flags & mask) === mask) appendExtent(out, { ...e, flags: mask });
  return out;
}

/** The extents whose flags have none of the bits of `mask` (e.g. allocated: no NBD_STATE_HOLE). */
export function rangesWithout(extents: readonly Extent[], mask: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) if ((e.flags & mask) === 0) appendExtent(out, { ...e, flags: 0 });
  return out;
}

export function totalLength(extents: readonly Extent[]): number {
  return extents.reduce((s, e) => s + e.length, 0);
}
