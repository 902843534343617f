/**
 * @module test/unit/console/charts
 * The charts' geometry (scales, line points broken at unknown values, areas, stacked bars, size
 * bars) and what the rendered SVG carries for people who cannot see it: a title, a description,
 * labelled axes and series told apart by dash pattern and name, not colour alone.
 */
import { describe, expect, it } from 'vitest';
import { areaPath, fillWidth, lineSegments, niceMax, percent, pointsAttr, stackedBars, xOf, yOf } from '../../../src/console/charts/geometry.ts';
import { LineChart } from '../../../src/console/charts/line-chart.tsx';
import { StackedBars } from '../../../src/console/charts/stacked-bars.tsx';
import { SizeBar } from '../../../src/console/charts/size-bar.tsx';

const box = { width: 100, height: 50 };
const html = (node: unknown) => String(node);

describe('chart geometry', () => {
  it('rounds a scale up to 1, 2 or 5 times a power of ten', () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(Number.NaN)).toBe(1);
    expect(niceMax(0.7)).toBe(1);
    expect(niceMax(1)).toBe(1);
    expect(niceMax(1.01)).toBe(2);
    expect(niceMax(3)).toBe(5);
    expect(niceMax(730)).toBe(1000);
    expect(niceMax(1_500_000)).toBe(2_000_000);
  });

  it('places the first bucket at the left edge, the last at the right and values from the bottom up', () => {
    expect(xOf(0, 5, box)).toBe(0);
    expect(xOf(4, 5, box)).toBe(100);
    expect(xOf(2, 5, box)).toBe(50);
    expect(xOf(0, 1, box)).toBe(0);
    expect(yOf(0, 10, box)).toBe(50);
    expect(yOf(10, 10, box)).toBe(0);
    expect(yOf(5, 10, box)).toBe(25);
    expect(yOf(20, 10, box)).toBe(0);
    expect(yOf(-3, 10, box)).toBe(50);
  });

  it('breaks a line where a value is unknown rather than drawing it as zero', () => {
    const segments = lineSegments([1, 2, null, 4, null], 4, box);
    expect(segments).toEqual([
      [
        [0, 37.5],
        [25, 25],
      ],
      [[75, 0]],
    ]);
    expect(pointsAttr(segments[0]!)).toBe('0,37.5 25,25');
    expect(lineSegments([null, null], 1, box)).toEqual([]);
  });

  it('closes the area under a line down to the baseline', () => {
    expect(areaPath([[0, 10], [50, 20]], box)).toBe('M0,50 L0,10 L50,20 L50,50 Z');
    expect(areaPath([], box)).toBe('');
  });

  it('stacks the second value of each bar on the first within the slot', () => {
    const [a, b] = stackedBars([[10, 10], [0, 40]], 40, { width: 100, height: 40 });
    expect(a).toEqual({ x: 5, width: 40, lowerY: 30, lowerHeight: 10, upperY: 20, upperHeight: 10 });
    expect(b).toEqual({ x: 55, width: 40, lowerY: 40, lowerHeight: 0, upperY: 0, upperHeight: 40 });
    expect(stackedBars([], 1, box)).toEqual([]);
  });

  it('fills a size bar in proportion, clamped to its length, and empty without a maximum', () => {
    expect(fillWidth(25, 100, 200)).toBe(50);
    expect(fillWidth(250, 100, 200)).toBe(200);
    expect(fillWidth(5, 0, 200)).toBe(0);
    expect(percent(1, 3)).toBe(33);
    expect(percent(1, 0)).toBe(0);
  });
});

describe('chart markup', () => {
  it('gives a line chart a title, a description, axis labels and a legend naming each dash pattern', () => {
    const out = html(
      LineChart({
        id: 'c1',
        title: 'Hit ratio',
        summary: 'Most requests hit.',
        series: [
          { label: 'served from cache', values: [1, null, 3], dash: 'solid' },
          { label: 'fetched upstream', values: [0, 1, 2], dash: 'dash' },
        ],
        xStart: '10:00',
        xEnd: '11:00',
        xLabel: 'time (UTC)',
        yLabel: 'bytes',
        format: (n) => `${n} B`,
        area: true,
      }),
    );
    expect(out).toContain('<svg role="img" aria-labelledby="c1-title c1-desc"');
    expect(out).toContain('<title id="c1-title">Hit ratio</title>');
    expect(out).toContain('<desc id="c1-desc">Most requests hit.</desc>');
    expect(out).toContain('time (UTC)');
    expect(out).toContain('>bytes<');
    expect(out).toContain('served from cache (solid line)');
    expect(out).toContain('fetched upstream (dashed line)');
    expect(out).toContain('stroke-dasharray="8 4"');
    expect(out).toContain('<figcaption><strong>Hit ratio.</strong> Most requests hit.</figcaption>');
    // The scale tops at 5 (niceMax of 3): its label is on the axis.
    expect(out).toContain('>5 B<');
    // The first series is broken at null: one point drawn as a dot, one polyline for the other series.
    expect(out.match(/<polyline/g)).toHaveLength(1);
    expect(out).toContain('<circle');
  });

  it('hatches the upper part of stacked bars and names both parts', () => {
    const out = html(StackedBars({ id: 's1', title: 'Hits and misses', summary: '1 KiB on hits.', values: [[1, 2]], labels: ['hits (cache)', 'misses (upstream)'], xStart: 'a', xEnd: 'b', yLabel: 'bytes', format: String }));
    expect(out).toContain('<pattern id="s1-hatch"');
    expect(out).toContain('fill="url(#s1-hatch)"');
    expect(out).toContain('hits (cache) (solid)');
    expect(out).toContain('misses (upstream) (hatched)');
    expect(out).toContain('<title id="s1-title">Hits and misses</title>');
  });

  it('writes a size bar out in words, with its marks', () => {
    const out = html(SizeBar({ value: 50, max: 200, label: 'Cache size', format: (n) => `${n} B`, marks: [{ at: 180, label: 'low watermark' }] }));
    expect(out).toContain('aria-label="Cache size: 50 B of 200 B (25 %), low watermark at 180 B"');
    expect(out).toContain('<rect x="0" y="0" width="50"');
    expect(out).toContain('x1="180"');
    expect(out).toContain('50 B of 200 B (25 %); low watermark 180 B');
    expect(html(SizeBar({ value: 1, max: 2, label: 'x', format: String, text: false }))).not.toContain('size-bar-text');
  });
});
