/**
 * @module console/charts/line-chart
 * A line (optionally area) chart of one or more series over time as inline SVG: a <title> and
 * <desc> for screen readers, labelled axes, each series drawn with its own dash pattern and named
 * in a legend, and a text summary under it, so nothing depends on telling colours apart.
 */
import { areaPath, lineSegments, niceMax, pointsAttr, yOf, type Box } from './geometry.ts';
import { AxisLabels, ChartFrame } from './chart-frame.tsx';

export type Dash = 'solid' | 'dash' | 'dot';

export interface LineSeries {
  label: string;
  values: ReadonlyArray<number | null>;
  dash: Dash;
}

export interface LineChartProps {
  /** Unique on the page: ids of the title and description derive from it. */
  id: string;
  title: string;
  /** One or two sentences saying what the chart shows (rendered visibly under it and as <desc>). */
  summary: string;
  series: readonly LineSeries[];
  /** Labels of the first and last bucket (the x axis). */
  xStart: string;
  xEnd: string;
  xLabel: string;
  yLabel: string;
  format: (n: number) => string;
  /** The top of the scale; by default the largest value rounded up. */
  max?: number;
  /** Fills the area under the first series. */
  area?: boolean;
}

export const CHART_BOX: Box = { width: 600, height: 160 };
const DASHES: Record<Dash, string | undefined> = { solid: undefined, dash: '8 4', dot: '2 4' };
const STROKES: Record<Dash, string> = { solid: '#1f5fa8', dash: '#a8431f', dot: '#3b7d23' };

export function LineChart(props: LineChartProps) {
  const box = CHART_BOX;
  const largest = Math.max(0, ...props.series.flatMap((s) => s.values.filter((v): v is number => v !== null)));
  const max = props.max ?? niceMax(largest);
  return (
    <ChartFrame id={props.id} title={props.title} summary={props.summary} box={box}>
      <line x1="0" y1="0" x2="0" y2={box.height} stroke="#555" />
      <line x1="0" y1={box.height} x2={box.width} y2={box.height} stroke="#555" />
      {[0, max / 2, max].map((v) => (
        <g>
          <line x1="-4" y1={yOf(v, max, box)} x2={box.width} y2={yOf(v, max, box)} stroke="#ddd" />
          <text x="-6" y={yOf(v, max, box) + 4} text-anchor="end" font-size="11">
            {props.format(v)}
          </text>
        </g>
      ))}
      {props.series.map((s, i) =>
        lineSegments(s.values, max, box).map((points) => (
          <g data-series={s.label}>
            {props.area && i === 0 ? <path d={areaPath(points, box)} fill={STROKES[s.dash]} fill-opacity="0.15" stroke="none" /> : null}
            {points.length === 1 ? (
              <circle cx={points[0]![0]} cy={points[0]![1]} r="2.5" fill={STROKES[s.dash]} />
            ) : (
              <polyline points={pointsAttr(points)} fill="none" stroke={STROKES[s.dash]} stroke-width="2" stroke-dasharray={DASHES[s.dash]} />
            )}
          </g>
        )),
      )}
      <AxisLabels box={box} xStart={props.xStart} xEnd={props.xEnd} xLabel={props.xLabel} yLabel={props.yLabel} />
      {props.series.map((s, i) => (
        <g transform={`translate(${i * 200},${box.height + 34})`}>
          <line x1="0" y1="-4" x2="28" y2="-4" stroke={STROKES[s.dash]} stroke-width="2" stroke-dasharray={DASHES[s.dash]} />
          <text x="34" y="0" font-size="11">
            {`${s.label} (${s.dash === 'solid' ? 'solid line' : s.dash === 'dash' ? 'dashed line' : 'dotted line'})`}
          </text>
        </g>
      ))}
    </ChartFrame>
  );
}
