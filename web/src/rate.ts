// Rates from cumulative counters, and the fixed-length series the overview
// chart plots.

/**
 * RateMeter turns samples of a cumulative counter (records appended, records
 * received) into a per-second rate over a sliding window.
 */
export class RateMeter {
  private readonly times: number[] = [];
  private readonly values: number[] = [];

  /** @param windowMs how far back the rate looks */
  constructor(private readonly windowMs = 5000) {}

  /**
   * observe records the counter's value at time tMs (milliseconds, monotonic).
   * A counter that goes backwards (a restarted server, a new log) restarts
   * the meter.
   */
  observe(tMs: number, value: number): void {
    const n = this.times.length;
    if (n > 0 && (value < this.values[n - 1] || tMs < this.times[n - 1])) {
      this.times.length = 0;
      this.values.length = 0;
    }
    this.times.push(tMs);
    this.values.push(value);
    // Keep one sample at or before the window's start so the rate spans it.
    while (this.times.length > 2 && this.times[1] <= tMs - this.windowMs) {
      this.times.shift();
      this.values.shift();
    }
  }

  /** rate is the counter's increase per second over the window; 0 until two samples exist. */
  rate(): number {
    const n = this.times.length;
    if (n < 2) return 0;
    const dt = this.times[n - 1] - this.times[0];
    if (dt <= 0) return 0;
    return ((this.values[n - 1] - this.values[0]) * 1000) / dt;
  }
}

/**
 * Series keeps the last `points` samples of several values against time,
 * laid out as the column arrays uPlot plots (first array: seconds).
 */
export class Series {
  private readonly columns: number[][];

  constructor(
    private readonly points: number,
    lines: number,
  ) {
    if (points < 1 || lines < 1) throw new RangeError("series needs at least one point and one line");
    this.columns = Array.from({ length: lines + 1 }, () => []);
  }

  /** add appends one sample: time in seconds and one value per line. */
  add(tSeconds: number, ...values: (number | null)[]): void {
    if (values.length !== this.columns.length - 1) {
      throw new RangeError(`series has ${this.columns.length - 1} lines, got ${values.length} values`);
    }
    this.columns[0].push(tSeconds);
    values.forEach((v, i) => this.columns[i + 1].push(v as number));
    if (this.columns[0].length > this.points) for (const c of this.columns) c.shift();
  }

  /** data returns the columns; callers must not modify them. */
  data(): number[][] {
    return this.columns;
  }

  get length(): number {
    return this.columns[0].length;
  }
}

/**
 * Backoff hands out reconnect delays that double from base to max, with
 * jitter so many dashboards do not reconnect in step after a restart.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 250,
    private readonly maxMs = 10_000,
    private readonly random: () => number = Math.random,
  ) {}

  /** next returns the delay before the next attempt, in [d/2, d] for the current step d. */
  next(): number {
    const d = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(d / 2 + (this.random() * d) / 2);
  }

  /** reset starts over after a success. */
  reset(): void {
    this.attempt = 0;
  }
}
