// The live NLL chart of one job (uPlot): training NLL from progress events, training-subset and
// validation NLL from epoch summaries, all against the optimiser step.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export class NllChart {
  constructor(element) {
    this.element = element;
    this.train = new Map(); // step -> train NLL
    this.trainEval = new Map(); // step -> training-subset NLL
    this.validation = new Map(); // step -> validation NLL
    this.plot = null;
    this.pending = false;
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(element);
  }

  clear() {
    this.train.clear();
    this.trainEval.clear();
    this.validation.clear();
    this.schedule();
  }

  addProgress(p) {
    this.train.set(Number(p.step), p.trainNll);
    this.schedule();
  }

  addEpoch(e) {
    const step = Number(e.step);
    this.validation.set(step, e.validationNll);
    if (e.trainEvalNll) this.trainEval.set(step, e.trainEvalNll);
    this.schedule();
  }

  // Redraws at most once per animation frame however many events arrive.
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  data() {
    const steps = [...new Set([...this.train.keys(), ...this.validation.keys()])];
    steps.sort((a, b) => a - b);
    const pick = (m) => steps.map((s) => (m.has(s) && Number.isFinite(m.get(s)) ? m.get(s) : null));
    return [steps, pick(this.train), pick(this.trainEval), pick(this.validation)];
  }

  size() {
    return { width: Math.max(320, this.element.clientWidth), height: 300 };
  }

  draw() {
    this.element.dataset.trainPoints = String(this.train.size);
    this.element.dataset.validationPoints = String(this.validation.size);
    const data = this.data();
    if (!this.plot) {
      this.plot = new uPlot(
        {
          ...this.size(),
          scales: { x: { time: false } },
          axes: [{ label: "step" }, { label: "NLL (nats)", size: 70 }],
          series: [
            { label: "step" },
            { label: "train", stroke: "#1f77b4", width: 1.5, spanGaps: true, points: { show: false } },
            { label: "train subset", stroke: "#2ca02c", width: 1.5, dash: [6, 4], spanGaps: true,
              points: { show: true, size: 6 } },
            { label: "validation", stroke: "#d62728", width: 2, spanGaps: true,
              points: { show: true, size: 7 } },
          ],
        },
        data,
        this.element,
      );
    } else {
      this.plot.setData(data);
    }
  }

  resize() {
    if (this.plot) this.plot.setSize(this.size());
  }
}
