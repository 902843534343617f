/**
 * @module console/charts/stacked-bars
 * Bars of two stacked parts (bytes served from the cache under bytes served from the upstream) as
 * inline SVG: the upper part is hatched as well as coloured, both are named in a legend, and a text
 * summary says the totals.
 */
import { niceMax, stackedBars, yOf, type Box } from './geometry.ts';
import { AxisLabels, ChartFrame } from './chart-frame.tsx';

export interface StackedBarsProps {
  id: string;
  title: string;
  summary: string;
  /** One entry per bar: [lower, upper]. */
  values: ReadonlyArray<readonly [number, number]>;
  labels: readonly [lower: string, upper: string];
  xStart: string;
  xEnd: string;
  yLabel: string;
  format: (n: number) => string;
}

const BOX: Box = { width: 600, height: 140 };

export function StackedBars(props: StackedBarsProps) {
  const max = niceMax(Math.max(0, ...props.values.map(([a, b]) => a + b)));
  const bars = stackedBars(props.values, max, BOX);
  const hatch = `${props.id}-hatch`;
  const defs = (
    <defs>
      <pattern id={hatch} width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
        <rect width="6" height="6" fill="#f3c9a8" />
        <line x1="0" y1="0" x2="0" y2="6" stroke="#a8431f" stroke-width="2" />
      </pattern>
    </defs>
  );
  return (
    <ChartFrame id={props.id} title={props.title} summary={props.summary} box={BOX} defs={defs}>
      <line x1="0" y1={BOX.height} x2={BOX.width} y2={BOX.height} stroke="#555" />
      {[0, max].map((v) => (
        <text x="-6" y={yOf(v, max, BOX) + 4} text-anchor="end" font-size="11">
          {props.format(v)}
        </text>
      ))}
      {bars.map((b) => (
        <g>
          {b.lowerHeight > 0 ? <rect x={b.x} y={b.lowerY} width={b.width} height={b.lowerHeight} fill="#1f5fa8" /> : null}
          {b.upperHeight > 0 ? <rect x={b.x} y={b.upperY} width={b.width} height={b.upperHeight} fill={`url(#${hatch})`} stroke="#a8431f" stroke-width="0.5" /> : null}
        </g>
      ))}
      <AxisLabels box={BOX} xStart={props.xStart} xEnd={props.xEnd} yLabel={props.yLabel} />
      <g transform={`translate(0,${BOX.height + 34})`}>
        <rect x="0" y="-10" width="14" height="10" fill="#1f5fa8" />
        <text x="20" y="0" font-size="11">
          {`${props.labels[0]} (solid)`}
        </text>
        <rect x="220" y="-10" width="14" height="10" fill={`url(#${hatch})`} stroke="#a8431f" />
        <text x="240" y="0" font-size="11">
          {`${props.labels[1]} (hatched)`}
        </text>
      </g>
    </ChartFrame>
  );
}
