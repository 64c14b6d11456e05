// The status page: polls GET /v1/admin/status (web's summary of the
// services' own /metrics) every few seconds while the tab is visible, keeps
// the readings of the last minutes in memory and redraws the numbers and
// charts in place. Counters in the summary are the processes' own totals
// since they started; rates are differences between readings, per backend
// (a restarted instance starts again from zero).

import { ApiError, api } from "./api.js";
import { showBanner, hideBanner } from "./banners.js";
import { lineChart } from "./chart.js";
import { $ } from "./util.js";

const POLL_MS = 2000;
const KEEP_MS = 5 * 60_000;
const MINUTE = 60_000;

const readings = [];

export function startStatus({ forbidden }) {
  let timer = 0;
  let busy = false;
  const poll = async () => {
    clearTimeout(timer);
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const data = await api("/v1/admin/status");
      hideBanner("status");
      readings.push(data);
      while (readings.length > 2 && readings[0].at < data.at - KEEP_MS) readings.shift();
      draw();
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) return forbidden();
      showBanner({ key: "status", kind: "error", testid: "status-error", text: `Couldn't read the status. ${e.message}` });
    } finally {
      busy = false;
    }
    timer = setTimeout(poll, POLL_MS);
  };
  document.addEventListener("visibilitychange", poll);
  window.addEventListener("resize", () => readings.length && draw());
  poll();
}

/** Growth of a per-backend counter between two readings, summed over the
 *  backends of the newer one (a value that went down restarted from 0). */
function growth(older, newer, pick) {
  let sum = 0;
  for (const b of newer.backends) {
    if (!b.up) continue;
    const before = older.backends.find((o) => o.url === b.url && o.up);
    const now = pick(b);
    const then = before ? pick(before) : now;
    sum += now >= then ? now - then : now;
  }
  return sum;
}

/** The newest reading at least a minute older than `latest`, or the oldest. */
function minuteAgo(latest) {
  let base = readings[0];
  for (const r of readings) if (r.at <= latest.at - MINUTE) base = r;
  return base;
}

function perMinute(pick) {
  const points = [];
  for (let i = 1; i < readings.length; i++) {
    const dt = readings[i].at - readings[i - 1].at;
    points.push([readings[i].at, dt > 0 ? (growth(readings[i - 1], readings[i], pick) * MINUTE) / dt : null]);
  }
  return points;
}

export function seconds(v) {
  if (v == null) return "–";
  if (v < 1) return `${Math.round(v * 1000)} ms`;
  return `${v.toFixed(v < 10 ? 2 : 1)} s`;
}

const count = (v) => (v == null ? "–" : Math.round(v).toLocaleString());
/** Axis labels: whole numbers as such, the halves a small scale needs with one decimal. */
const axis = (v) => (Number.isInteger(v) ? v.toLocaleString() : v.toFixed(1));

function draw() {
  const latest = readings[readings.length - 1];
  const t = latest.totals;
  const up = latest.backends.filter((b) => b.up).length;
  $("status-updated").textContent = `Live · updated ${new Date(latest.at).toLocaleTimeString()}`;
  $("status-sockets").textContent = count(t.sockets);
  $("status-backends").textContent = `${up} of ${latest.backends.length} backend${latest.backends.length === 1 ? "" : "s"} up`;
  $("status-messages-minute").textContent = count(growth(minuteAgo(latest), latest, (b) => b.questions));
  $("status-questions-total").textContent = count(t.questions);
  $("status-replies-total").textContent = count(t.replies);
  $("status-ttft-p50").textContent = seconds(t.ttft_p50);
  $("status-ttft-p99").textContent = seconds(t.ttft_p99);
  const kinds = Object.entries(t.failures).sort((a, b) => b[1] - a[1]);
  $("status-failures-total").textContent = count(kinds.reduce((n, [, v]) => n + v, 0));
  const failures = $("status-failures");
  failures.textContent = kinds.length ? kinds.map(([k, v]) => `${k} ${count(v)}`).join(" · ") : "none";
  failures.dataset.kinds = JSON.stringify(Object.fromEntries(kinds));
  $("status-lag").textContent = count(t.consumer_lag);
  $("status-dead").textContent = `${count(t.dead_letters)} dead letter${t.dead_letters === 1 ? "" : "s"}`;

  const from = latest.at - KEEP_MS;
  const to = latest.at;
  const multi = latest.backends.length > 1;
  const sockets = latest.backends.map((b, i) => ({
    label: `backend ${i + 1}`,
    points: readings.map((r) => [r.at, r.backends.find((x) => x.url === b.url && x.up)?.sockets ?? null]),
  }));
  if (multi) sockets.unshift({ label: "all", points: readings.map((r) => [r.at, r.totals.sockets]) });
  lineChart($("chart-sockets"), $("legend-sockets"), { series: sockets, from, to, format: axis });
  lineChart($("chart-messages"), $("legend-messages"), {
    series: [
      { label: "messages", points: perMinute((b) => b.questions) },
      { label: "replies", points: perMinute((b) => b.replies) },
    ],
    from,
    to,
    format: axis,
  });
  lineChart($("chart-ttft"), $("legend-ttft"), {
    series: [
      { label: "p50", points: readings.map((r) => [r.at, r.totals.ttft_p50]) },
      { label: "p99", points: readings.map((r) => [r.at, r.totals.ttft_p99]) },
    ],
    from,
    to,
    format: seconds,
  });
  const allKinds = [...new Set(readings.flatMap((r) => Object.keys(r.totals.failures)))].sort();
  lineChart($("chart-failures"), $("legend-failures"), {
    series: allKinds.length
      ? allKinds.map((k) => ({ label: k, points: perMinute((b) => b.failures[k] || 0) }))
      : [{ label: "none", points: perMinute(() => 0) }],
    from,
    to,
    format: axis,
  });
  lineChart($("chart-lag"), $("legend-lag"), {
    series: [{ label: "entries behind", points: readings.map((r) => [r.at, r.totals.consumer_lag]) }],
    from,
    to,
    format: axis,
  });

  const rows = $("status-backend-rows");
  rows.replaceChildren(
    ...latest.backends.map((b, i) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "status-backend-row";
      tr.dataset.up = String(b.up);
      const cells = [
        [`backend ${i + 1}`, b.url],
        [b.up ? (b.breaker_open ? "up · breaker open" : "up") : "down"],
        [b.up ? count(b.sockets) : "–"],
        [b.up ? count(b.questions) : "–"],
        [b.up ? count(b.replies) : "–"],
        [b.up ? `${seconds(b.ttft_p50)} / ${seconds(b.ttft_p99)}` : "–"],
        [b.up ? count(b.consumer_lag) : "–"],
      ];
      cells.forEach(([text, sub], j) => {
        const td = document.createElement("td");
        if (j >= 2) td.className = "num";
        if (j === 1) td.dataset.state = b.up ? "up" : "down";
        td.textContent = text;
        if (sub) {
          const small = document.createElement("span");
          small.className = "muted cell-sub";
          small.textContent = sub;
          td.append(small);
        }
        tr.append(td);
      });
      return tr;
    }),
  );
}
