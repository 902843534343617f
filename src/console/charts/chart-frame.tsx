/**
 * @module console/charts/chart-frame
 * What every console chart draws around its plot: the figure with an SVG named by its <title> and
 * <desc>, a visible caption saying the same, the padding that leaves room for the labels, and the
 * axis labels (first and last bucket under the x axis, the unit up the y axis).
 */
import type { Child } from 'hono/jsx';
import type { Box } from './geometry.ts';

/** Room around the plot for the axis labels and the legend. */
export const PAD = { left: 70, right: 10, top: 10, bottom: 48 };

export interface ChartFrameProps {
  /** Unique on the page: ids of the title and description derive from it. */
  id: string;
  title: string;
  summary: string;
  box: Box;
  /** SVG <defs> (patterns) the plot refers to. */
  defs?: Child;
  /** The plot, drawn with its origin at the top left of `box`. */
  children?: Child;
}

export function ChartFrame(props: ChartFrameProps) {
  const { box } = props;
  const titleId = `${props.id}-title`;
  const descId = `${props.id}-desc`;
  return (
    <figure class="chart" id={props.id}>
      <svg
        role="img"
        aria-labelledby={`${titleId} ${descId}`}
        viewBox={`0 0 ${box.width + PAD.left + PAD.right} ${box.height + PAD.top + PAD.bottom}`}
        width="100%"
        preserveAspectRatio="xMidYMid meet"
      >
        <title id={titleId}>{props.title}</title>
        <desc id={descId}>{props.summary}</desc>
        {props.defs}
        <g transform={`translate(${PAD.left},${PAD.top})`}>{props.children}</g>
      </svg>
      <figcaption>
        <strong>{props.title}.</strong> {props.summary}
      </figcaption>
    </figure>
  );
}

/** The labels of the first and last bucket, the x axis's name if any, and the y axis's name turned upright. */
export function AxisLabels(props: { box: Box; xStart: string; xEnd: string; xLabel?: string; yLabel: string }) {
  const { box } = props;
  return (
    <>
      <text x="0" y={box.height + 14} font-size="11">
        {props.xStart}
      </text>
      <text x={box.width} y={box.height + 14} text-anchor="end" font-size="11">
        {props.xEnd}
      </text>
      {props.xLabel !== undefined ? (
        <text x={box.width / 2} y={box.height + 14} text-anchor="middle" font-size="11">
          {props.xLabel}
        </text>
      ) : null}
      <text transform={`translate(${-PAD.left + 12},${box.height / 2}) rotate(-90)`} text-anchor="middle" font-size="11">
        {props.yLabel}
      </text>
    </>
  );
}
