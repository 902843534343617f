/**
 * @module console/charts/geometry
 * The arithmetic of the console's charts, apart from their markup so it can be tested: scales
 * rounded to readable maxima, points of a line (broken where a value is unknown), the outline of
 * the area under it, stacked bars, and the fill of a size bar.
 */

export interface Box {
  width: number;
  height: number;
}

export type Point = readonly [x: number, y: number];

/** The smallest 1, 2 or 5 × 10ⁿ at or above `max`, so axis labels are round; 1 when there is nothing to scale. */
export function niceMax(max: number): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Where value `v` sits vertically in `box` on a 0..max scale (SVG y grows downwards); clamped to the box. */
export function yOf(v: number, max: number, box: Box): number {
  return round(box.height - (Math.min(Math.max(v, 0), max) / max) * box.height);
}

/** Where bucket `i` of `n` sits horizontally: the first at 0, the last at the right edge. */
export function xOf(i: number, n: number, box: Box): number {
  return n <= 1 ? 0 : round((i / (n - 1)) * box.width);
}

/** The runs of known values as points: a null (the mirror was not running) breaks the line. */
export function lineSegments(values: ReadonlyArray<number | null>, max: number, box: Box): Point[][] {
  const segments: Point[][] = [];
  let run: Point[] = [];
  values.forEach((v, i) => {
    if (v === null) {
      if (run.length > 0) segments.push(run);
      run = [];
      return;
    }
    run.push([xOf(i, values.length, box), yOf(v, max, box)]);
  });
  if (run.length > 0) segments.push(run);
  return segments;
}

/** SVG `points` for a polyline. */
export function pointsAttr(points: readonly Point[]): string {
  return points.map(([x, y]) => `${x},${y}`).join(' ');
}

/** The closed outline under a run of points, down to the baseline. */
export function areaPath(points: readonly Point[], box: Box): string {
  if (points.length === 0) return '';
  const [first] = points;
  const last = points[points.length - 1]!;
  return `M${first![0]},${box.height} ${points.map(([x, y]) => `L${x},${y}`).join(' ')} L${last[0]},${box.height} Z`;
}

export interface StackedBar {
  x: number;
  width: number;
  /** The lower part (first value): top edge and height. */
  lowerY: number;
  lowerHeight: number;
  /** The upper part (second value), stacked on the lower one. */
  upperY: number;
  upperHeight: number;
}

/** `n` bars side by side across the box with a gap of a fifth of a slot, each value stacked on the previous. */
export function stackedBars(pairs: ReadonlyArray<readonly [number, number]>, max: number, box: Box): StackedBar[] {
  const slot = pairs.length === 0 ? 0 : box.width / pairs.length;
  const width = round(slot * 0.8);
  return pairs.map(([lower, upper], i) => {
    const lowerHeight = round(box.height - yOf(lower, max, box));
    const total = round(box.height - yOf(lower + upper, max, box));
    const upperHeight = round(total - lowerHeight);
    return { x: round(i * slot + slot * 0.1), width, lowerY: round(box.height - lowerHeight), lowerHeight, upperY: round(box.height - total), upperHeight };
  });
}

/** The filled length of a size bar `width` long for `value` of `max` (clamped; nothing when max is 0). */
export function fillWidth(value: number, max: number, width: number): number {
  if (!(max > 0)) return 0;
  return round((Math.min(Math.max(value, 0), max) / max) * width);
}

/** `value` as a whole percentage of `max` (0 when max is 0). */
export function percent(value: number, max: number): number {
  return max > 0 ? Math.round((value / max) * 100) : 0;
}
