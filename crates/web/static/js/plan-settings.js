// The settings page's plan card: the plan, the usage against it (a meter
// that turns amber at the warning share and red when spent), Upgrade (a
// checkout in place; the provider sends the browser back here) and Cancel.

import { api } from "./api.js";
import { showBanner } from "./banners.js";
import { loadUsage, startUpgrade } from "./plan.js";
import { $ } from "./util.js";

const limitText = (n, unit) => (n ? `${n} ${unit}` : "Unlimited");

function hours(secs) {
  return secs % 3600 === 0 ? `${secs / 3600} h` : `${Math.round(secs / 60)} min`;
}

export function showUsage(u) {
  const { plan, usage } = u;
  $("plan-details").removeAttribute("aria-busy");
  $("plan-name").textContent = plan.label;
  $("plan-name").dataset.plan = plan.id;
  const span = plan.window_secs === 86400 ? "today" : `in the last ${hours(plan.window_secs)}`;
  $("usage-messages").textContent = plan.daily_messages
    ? `${usage.used} of ${plan.daily_messages} ${span}`
    : `Unlimited`;
  $("usage-messages").dataset.used = String(usage.used);
  $("usage-rate").textContent = limitText(plan.rate_per_minute, "messages a minute");
  $("usage-concurrent").textContent = plan.concurrent_generations ? `${u.running} of ${plan.concurrent_generations}` : "Unlimited";
  const meter = $("usage-meter");
  meter.hidden = !plan.daily_messages;
  if (plan.daily_messages) {
    const share = Math.min(1, usage.used / plan.daily_messages);
    $("usage-meter-fill").style.width = `${share * 100}%`;
    meter.setAttribute("aria-valuemax", String(plan.daily_messages));
    meter.setAttribute("aria-valuenow", String(usage.used));
    meter.dataset.level = share >= 1 ? "full" : share * 100 >= u.warn_percent ? "warning" : "ok";
  }
  const upgrade = $("plan-upgrade");
  upgrade.hidden = !u.upgrade;
  if (u.upgrade) upgrade.textContent = `Upgrade to ${u.upgrade.label}`;
  $("plan-cancel").hidden = !(u.subscription && ["active", "trialing", "past_due"].includes(u.subscription.status));
}

async function refresh() {
  try {
    showUsage(await loadUsage());
  } catch (e) {
    showBanner({ key: "plan", kind: "error", testid: "plan-banner", text: `Couldn't load your plan. ${e.message}` });
  }
}

export function wirePlanCard() {
  $("plan-upgrade").addEventListener("click", (event) => startUpgrade(event.currentTarget));
  $("plan-cancel").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    $("plan-status").textContent = "Cancelling…";
    try {
      await api("/v1/billing/cancel", { method: "POST" });
      $("plan-status").textContent = "Cancelled. You're back on the free plan.";
      await refresh();
    } catch (e) {
      $("plan-status").textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
  const params = new URLSearchParams(window.location.search);
  if (params.get("checkout") === "success") $("plan-status").textContent = "Thank you! Your payment went through.";
  if (params.get("checkout") === "cancelled") $("plan-status").textContent = "Checkout cancelled; nothing was charged.";
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
  return refresh();
}
