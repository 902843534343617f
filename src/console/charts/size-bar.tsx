/**
 * @module console/charts/size-bar
 * A horizontal bar of a size against a maximum (cache bytes against the quota, a repository against
 * the largest on the page), with optional marks (the low watermark) drawn as labelled dashed lines;
 * the numbers are always written out next to it.
 */
import { fillWidth, percent } from './geometry.ts';

export interface SizeMark {
  at: number;
  label: string;
}

export interface SizeBarProps {
  value: number;
  max: number;
  /** What the bar measures, for screen readers: "Cache size". */
  label: string;
  format: (n: number) => string;
  marks?: readonly SizeMark[];
  /** Writes "x of max (p %)" beside the bar; off where a table column already says the number. */
  text?: boolean;
}

const WIDTH = 200;
const HEIGHT = 14;

export function SizeBar(props: SizeBarProps) {
  const filled = fillWidth(props.value, props.max, WIDTH);
  const p = percent(props.value, props.max);
  const words = props.max > 0 ? `${props.format(props.value)} of ${props.format(props.max)} (${p} %)` : props.format(props.value);
  const marks = props.marks ?? [];
  return (
    <span class="size-bar" data-size-bar>
      <svg role="img" aria-label={`${props.label}: ${words}${marks.map((m) => `, ${m.label} at ${props.format(m.at)}`).join('')}`} viewBox={`0 0 ${WIDTH} ${HEIGHT}`} width={WIDTH} height={HEIGHT}>
        <rect x="0" y="0" width={WIDTH} height={HEIGHT} fill="#e8e8e8" stroke="#777" stroke-width="1" />
        {filled > 0 ? <rect x="0" y="0" width={filled} height={HEIGHT} fill="#1f5fa8" /> : null}
        {marks.map((m) => (
          <line x1={fillWidth(m.at, props.max, WIDTH)} y1="0" x2={fillWidth(m.at, props.max, WIDTH)} y2={HEIGHT} stroke="#000" stroke-width="2" stroke-dasharray="3 2" />
        ))}
      </svg>
      {props.text === false ? null : <span class="size-bar-text"> {words}{marks.map((m) => `; ${m.label} ${props.format(m.at)}`).join('')}</span>}
    </span>
  );
}
