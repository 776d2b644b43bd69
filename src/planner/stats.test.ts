import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { iqr, mad, median, olsOnIndex, rSquared } from "./stats.ts";

describe("statistics as CloudSim computes them", () => {
  test("median of odd and even counts", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });

  test("MAD is the median absolute deviation, unscaled", () => {
    // median 3; deviations 2,1,0,1,7 -> sorted 0,1,1,2,7 -> 1
    assert.equal(mad([1, 2, 3, 4, 10]), 1);
  });

  test("IQR uses quartile positions round(p (n+1)) - 1", () => {
    // n = 12: q1 index round(3.25)-1 = 2, q3 index round(9.75)-1 = 9 of 1..12 -> 3 and 10
    const xs = [12, 1, 11, 2, 10, 3, 9, 4, 8, 5, 7, 6];
    assert.equal(iqr(xs), 10 - 3);
    // n = 30: indices 7 and 22 -> values 8 and 23
    assert.equal(iqr(Array.from({ length: 30 }, (_, i) => 30 - i)), 23 - 8);
  });

  test("OLS on x = 1..n matches the closed form", () => {
    const y = [0.2, 0.25, 0.31, 0.33, 0.41, 0.44, 0.52, 0.55, 0.6, 0.66];
    const n = y.length;
    const xm = (n + 1) / 2;
    const ym = y.reduce((s, v) => s + v, 0) / n;
    let sxy = 0;
    let sxx = 0;
    y.forEach((v, i) => {
      sxy += (i + 1 - xm) * (v - ym);
      sxx += (i + 1 - xm) ** 2;
    });
    const [a, b] = olsOnIndex(y);
    assert.ok(Math.abs(b - sxy / sxx) < 1e-12);
    assert.ok(Math.abs(a - (ym - (sxy / sxx) * xm)) < 1e-12);
  });

  test("R² is 1 for an exact linear relation and throws when underdetermined", () => {
    const x = [1, 2, 3, 4, 5, 6];
    const y = x.map((v) => 3 * v + 1);
    assert.ok(Math.abs(rSquared(y, [x], 6) - 1) < 1e-9);
    assert.throws(
      () =>
        rSquared(
          [1, 2],
          [
            [1, 2],
            [2, 1],
          ],
          2,
        ),
      RangeError,
    );
  });
});
