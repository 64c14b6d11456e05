// Plans in the page: the 80 % warning, the upgrade prompt when a message is
// refused (`quota_exceeded`), "Upgrade" (a checkout with the payment
// provider), and the live switch when the plan changes (`plan.changed` on
// the socket) — the prompt goes away and the kept message can be sent.

import { api } from "./api.js";
import { hideBanner, showBanner } from "./banners.js";
import { $ } from "./util.js";

/** Start a checkout of the next plan up. The chat page opens it in a new tab
 *  (it keeps the conversation and the refused message, and hears the plan
 *  change live); settings goes there in place. */
export async function startUpgrade(button, { newTab = false, plan = null } = {}) {
  // Opened before the request, while the click still counts as the user's.
  const tab = newTab ? window.open("", "_blank") : null;
  if (button) button.disabled = true;
  try {
    const { url } = await api("/v1/billing/checkout", { method: "POST", body: plan ? { plan } : {} });
    if (tab) {
      tab.opener = null;
      tab.location.href = url;
    } else {
      window.location.assign(url);
    }
  } catch (e) {
    if (tab) tab.close();
    showBanner({ key: "upgrade-error", kind: "error", testid: "upgrade-error", text: `Couldn't start the upgrade. ${e.message}` });
  } finally {
    if (button) button.disabled = false;
  }
}

function withUpgradeButton(el, { newTab }) {
  if (!el) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn-primary btn-sm";
  button.dataset.testid = "upgrade-button";
  button.textContent = "Upgrade";
  button.addEventListener("click", () => startUpgrade(button, { newTab }));
  el.querySelector("p").after(button);
}

/** A message was refused by the plan: say why and offer the upgrade. */
export function showUpgradePrompt(f, { newTab = true } = {}) {
  hideBanner("quota-warning");
  const el = showBanner({
    key: "upgrade-prompt",
    kind: "warning",
    testid: "upgrade-prompt",
    text: f.message || "Your plan's limit is reached.",
  });
  if (el) {
    el.dataset.limit = f.limit || "";
    el.dataset.retryAfter = String(f.retry_after || "");
  }
  if (f.upgrade_url) withUpgradeButton(el, { newTab });
}

/** At 80 % of the quota: a warning, once per count. */
export function showQuotaWarning(usage) {
  if (!usage || !usage.quota) return;
  const left = Math.max(0, usage.quota - usage.used);
  const el = showBanner({
    key: "quota-warning",
    kind: "warning",
    testid: "quota-warning",
    text: `You have used ${usage.used} of your ${usage.quota} messages for today; ${left} left.`,
  });
  if (el) el.dataset.used = String(usage.used);
  withUpgradeButton(el, { newTab: true });
}

/** The plan changed (here, in another tab, or by an administrator). */
export function planChanged(plan) {
  if (!plan) return;
  showPlanBadge(plan);
  hideBanner("quota-warning");
  hideBanner("upgrade-prompt");
  const limits = plan.daily_messages ? `${plan.daily_messages} messages a day` : "no daily limit";
  showBanner({
    key: "plan-changed",
    kind: "info",
    testid: "plan-changed",
    text: `You're on the ${plan.label} plan now: ${limits}.`,
  });
  document.dispatchEvent(new CustomEvent("confab:plan", { detail: plan }));
}

export function showPlanBadge(plan) {
  const badge = $("plan-badge");
  if (!badge || !plan) return;
  badge.textContent = plan.label;
  badge.dataset.plan = plan.id;
  badge.hidden = false;
}

/** The plan and usage (GET /v1/usage). */
export const loadUsage = () => api("/v1/usage");
