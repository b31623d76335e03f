// A virtualized list with fixed-height rows: only the rows in view exist in
// the DOM, positioned with transforms (CSSOM, which the CSP allows), so a
// window of 10,000 records costs as much to draw as forty.

export interface VirtualListOptions<T> {
  rowHeight: number;
  /** createRow makes an empty row element; it is reused for many items. */
  createRow: () => HTMLElement;
  /** renderRow fills a row for an item. */
  renderRow: (row: HTMLElement, item: T, index: number) => void;
  /** onSelect is called when a row is clicked. */
  onSelect?: (item: T, index: number) => void;
  /** onFollow is called when following the newest row starts or stops. */
  onFollow?: (following: boolean) => void;
}

export class VirtualList<T> {
  private readonly spacer: HTMLElement;
  private readonly pool: HTMLElement[] = [];
  private readonly bound = new WeakMap<HTMLElement, number>();
  private length = 0;
  private get: (i: number) => T | undefined = () => undefined;
  private frame = 0;
  /** following keeps the newest row in view; scrolling up turns it off. */
  private following = true;

  constructor(
    private readonly el: HTMLElement,
    private readonly opts: VirtualListOptions<T>,
  ) {
    this.spacer = document.createElement("div");
    this.spacer.className = "spacer";
    el.append(this.spacer);
    el.addEventListener("scroll", () => {
      this.follow = this.atBottom();
      this.schedule();
    });
    el.addEventListener("keydown", (e) => {
      const page = Math.max(1, Math.floor(el.clientHeight / opts.rowHeight) - 1) * opts.rowHeight;
      const moves: Record<string, number> = { ArrowDown: opts.rowHeight, ArrowUp: -opts.rowHeight, PageDown: page, PageUp: -page };
      if (e.key === "End") this.follow = true;
      else if (e.key === "Home") el.scrollTop = 0;
      else if (e.key in moves) el.scrollTop += moves[e.key];
      else return;
      e.preventDefault();
      this.schedule();
    });
    el.addEventListener("click", (e) => {
      const row = (e.target as HTMLElement).closest(".row") as HTMLElement | null;
      const i = row ? this.bound.get(row) : undefined;
      if (i === undefined) return;
      const item = this.get(i);
      if (item !== undefined) opts.onSelect?.(item, i);
    });
    new ResizeObserver(() => this.schedule()).observe(el);
  }

  /**
   * update points the list at length items read through get. dropped says
   * how many items were removed from the front since the last update, so
   * a reader who scrolled up keeps looking at the same records.
   */
  update(length: number, get: (i: number) => T | undefined, dropped = 0): void {
    this.length = length;
    this.get = get;
    if (!this.following && dropped > 0) this.el.scrollTop = Math.max(0, this.el.scrollTop - dropped * this.opts.rowHeight);
    this.schedule();
  }

  get follow(): boolean {
    return this.following;
  }

  /** follow (true) scrolls to the newest row and keeps it in view. */
  set follow(on: boolean) {
    if (on === this.following) return;
    this.following = on;
    this.opts.onFollow?.(on);
    if (on) this.schedule();
  }

  /** redraw re-renders the rows in view (e.g. after a selection change). */
  redraw(): void {
    this.schedule();
  }

  private atBottom(): boolean {
    const el = this.el;
    return el.scrollTop + el.clientHeight >= el.scrollHeight - this.opts.rowHeight;
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const h = this.opts.rowHeight;
    const total = this.length * h;
    this.spacer.style.height = `${total}px`;
    if (this.following) this.el.scrollTop = total;
    const view = this.el.clientHeight;
    const first = Math.max(0, Math.floor(this.el.scrollTop / h) - 2);
    const last = Math.min(this.length, Math.ceil((this.el.scrollTop + view) / h) + 2);
    const need = Math.max(0, last - first);
    while (this.pool.length < need) {
      const row = this.opts.createRow();
      this.pool.push(row);
      this.el.append(row);
    }
    for (let k = 0; k < this.pool.length; k++) {
      const row = this.pool[k];
      const i = first + k;
      const item = k < need ? this.get(i) : undefined;
      if (item === undefined) {
        row.hidden = true;
        this.bound.delete(row);
        continue;
      }
      row.hidden = false;
      row.style.transform = `translateY(${i * h}px)`;
      this.bound.set(row, i);
      this.opts.renderRow(row, item, i);
    }
  }
}
