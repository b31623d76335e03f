// The overview's rate chart: append and tail rates over the last minutes.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatRate } from "./format.js";

export class RateChart {
  private readonly plot: uPlot;

  constructor(el: HTMLElement) {
    const css = getComputedStyle(document.documentElement);
    const color = (name: string) => css.getPropertyValue(name).trim() || "#888";
    const axis = { stroke: color("--muted"), grid: { stroke: color("--line"), width: 1 }, ticks: { show: false } };
    this.plot = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height: 150,
        cursor: { drag: { x: false, y: false } },
        legend: { live: false },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(10, max * 1.1)] } },
        axes: [
          {
            ...axis,
            // Whole seconds only, so labels never repeat.
            incrs: [1, 2, 5, 10, 15, 30, 60, 120],
            values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toTimeString().slice(0, 8)),
            space: 70,
          },
          { ...axis, size: 56, values: (_u, ticks) => ticks.map((t) => formatRate(t).replace("/s", "")) },
        ],
        series: [
          {},
          { label: "append/s", stroke: color("--accent"), width: 1.5, points: { show: false } },
          { label: "tail/s", stroke: color("--ok"), width: 1.5, points: { show: false } },
        ],
      },
      [[], [], []],
      el,
    );
    new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      if (w !== this.plot.width) this.plot.setSize({ width: w, height: 150 });
    }).observe(el);
  }

  setData(data: number[][]): void {
    this.plot.setData(data as uPlot.AlignedData);
  }
}
