// Line charts drawn as SVG by hand: a few paths and labels per redraw, no
// chart library. Colours come from the stylesheet (`.series-N`), so light
// and dark themes need nothing here.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The smallest "round" number (1, 2, 2.5, 5 × 10^n) at or above v. */
export function niceCeil(v) {
  if (!(v > 0)) return 0;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Draw `series` ([{label, points: [[ms, value|null]]}]) between `from` and
 *  `to` (ms) into `svg`, and its legend into `legend`. A null value breaks
 *  the line (no reading). */
export function lineChart(svg, legend, { series, from, to, format = String }) {
  const w = Math.max(200, Math.round(svg.clientWidth || 300));
  const h = Math.max(100, Math.round(svg.clientHeight || 150));
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const pad = { l: 44, r: 10, t: 10, b: 20 };
  let top = 0;
  for (const s of series) for (const [, v] of s.points) if (v != null && v > top) top = v;
  top = niceCeil(top) || 1;
  const span = Math.max(1, to - from);
  const x = (t) => pad.l + ((t - from) / span) * (w - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / top) * (h - pad.t - pad.b);
  const kids = [];
  for (let i = 0; i <= 2; i++) {
    const v = (top * i) / 2;
    kids.push(el("line", { class: "chart-grid-line", x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v) }));
    kids.push(el("text", { class: "chart-axis", x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const minutes = Math.round(span / 60000);
  kids.push(el("text", { class: "chart-axis", x: pad.l, y: h - 4 }, minutes >= 1 ? `−${minutes} min` : "−1 min"));
  kids.push(el("text", { class: "chart-axis", x: w - pad.r, y: h - 4, "text-anchor": "end" }, "now"));
  series.forEach((s, i) => {
    let d = "";
    let pen = false;
    for (const [t, v] of s.points) {
      if (v == null || t < from) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (d) kids.push(el("path", { class: `chart-line series-${i % 6}`, d }));
  });
  svg.replaceChildren(...kids);
  if (legend) {
    legend.replaceChildren(
      ...series.map((s, i) => {
        const item = document.createElement("span");
        item.className = "legend-item";
        const swatch = document.createElement("span");
        swatch.className = `legend-swatch series-${i % 6}`;
        item.append(swatch, s.label);
        return item;
      }),
    );
  }
}
