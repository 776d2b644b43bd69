/**
 * Statistics the overload detectors need, written to reproduce CloudSim 3.0.3 / commons-math3
 * results to the last bit where the reference experiment depends on them.
 */

/** Median (mean of the two middle values for even n). Sorts a copy. */
export function median(xs: ArrayLike<number>, n = xs.length): number {
  if (n === 0) return Number.NaN;
  const a = Float64Array.from({ length: n }, (_, i) => xs[i]).sort();
  const mid = n >> 1;
  return n % 2 === 1 ? a[mid] : (a[mid - 1] + a[mid]) / 2;
}

/** Median absolute deviation (not scaled by 1.4826), as CloudSim's MathUtil.mad. */
export function mad(xs: ArrayLike<number>, n = xs.length): number {
  if (n === 0) return 0;
  const m = median(xs, n);
  const dev = new Float64Array(n);
  for (let i = 0; i < n; i++) dev[i] = Math.abs(m - xs[i]);
  return median(dev, n);
}

/** Interquartile range with CloudSim's quartile positions round(p (n + 1)) - 1. */
export function iqr(xs: ArrayLike<number>, n = xs.length): number {
  const a = Float64Array.from({ length: n }, (_, i) => xs[i]).sort();
  const q1 = Math.floor(0.25 * (n + 1) + 0.5) - 1;
  const q3 = Math.floor(0.75 * (n + 1) + 0.5) - 1;
  return a[q3] - a[q1];
}

/**
 * Ordinary least squares of y on x = 1..n, computed with commons-math3 SimpleRegression's
 * incremental updates (so results match CloudSim's). Returns [intercept, slope]; NaN slope
 * when x has no spread.
 */
export function olsOnIndex(y: ArrayLike<number>, n = y.length): [number, number] {
  let sumX = 0;
  let sumY = 0;
  let sumXX = 0;
  let sumXY = 0;
  let xbar = 0;
  let ybar = 0;
  for (let i = 0; i < n; i++) {
    const x = i + 1;
    const v = y[i];
    if (i === 0) {
      xbar = x;
      ybar = v;
    } else {
      const fact1 = 1 + i;
      const fact2 = i / (1 + i);
      const dx = x - xbar;
      const dy = v - ybar;
      sumXX += dx * dx * fact2;
      sumXY += dx * dy * fact2;
      xbar += dx / fact1;
      ybar += dy / fact1;
    }
    sumX += x;
    sumY += v;
  }
  const slope = n < 2 || Math.abs(sumXX) < 10 * Number.MIN_VALUE ? Number.NaN : sumXY / sumXX;
  return [(sumY - slope * sumX) / n, slope];
}

/**
 * R² of the OLS fit (with intercept) of y on the columns of X (m samples, k predictors), by
 * normal equations with Gaussian elimination and partial pivoting. Throws when there are too
 * few samples for the predictors or the system is singular (CloudSim then falls back to MMT).
 */
export function rSquared(y: ArrayLike<number>, columns: ArrayLike<number>[], m: number): number {
  const k = columns.length + 1;
  if (m < k) throw new RangeError("not enough samples for the number of predictors");
  const A = new Float64Array(k * k);
  const b = new Float64Array(k);
  const row = new Float64Array(k);
  for (let t = 0; t < m; t++) {
    row[0] = 1;
    for (let j = 1; j < k; j++) row[j] = columns[j - 1][t];
    for (let i = 0; i < k; i++) {
      b[i] += row[i] * y[t];
      for (let j = 0; j < k; j++) A[i * k + j] += row[i] * row[j];
    }
  }
  const beta = solve(A, b, k);
  let mean = 0;
  for (let t = 0; t < m; t++) mean += y[t];
  mean /= m;
  let rss = 0;
  let tss = 0;
  for (let t = 0; t < m; t++) {
    let fit = beta[0];
    for (let j = 1; j < k; j++) fit += beta[j] * columns[j - 1][t];
    rss += (y[t] - fit) ** 2;
    tss += (y[t] - mean) ** 2;
  }
  return 1 - rss / tss;
}

function solve(A: Float64Array, b: Float64Array, k: number): Float64Array {
  const a = A.slice();
  const x = b.slice();
  let scale = 0;
  for (let i = 0; i < k * k; i++) scale = Math.max(scale, Math.abs(a[i]));
  const eps = 1e-12 * (scale || 1);
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r * k + c]) > Math.abs(a[p * k + c])) p = r;
    if (Math.abs(a[p * k + c]) <= eps) throw new RangeError("singular design matrix");
    if (p !== c) {
      for (let j = 0; j < k; j++) [a[c * k + j], a[p * k + j]] = [a[p * k + j], a[c * k + j]];
      [x[c], x[p]] = [x[p], x[c]];
    }
    for (let r = c + 1; r < k; r++) {
      const f = a[r * k + c] / a[c * k + c];
      if (f === 0) continue;
      for (let j = c; j < k; j++) a[r * k + j] -= f * a[c * k + j];
      x[r] -= f * x[c];
    }
  }
  for (let r = k - 1; r >= 0; r--) {
    let s = x[r];
    for (let j = r + 1; j < k; j++) s -= a[r * k + j] * x[j];
    x[r] = s / a[r * k + r];
  }
  return x;
}
