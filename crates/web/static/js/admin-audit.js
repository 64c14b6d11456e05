// The audit log: every admin action, newest first (GET
// /v1/auth/admin/audit). Re-read when the tab is looked at again.

import { ApiError, api } from "./api.js";
import { showBanner } from "./banners.js";
import { $ } from "./util.js";

const ACTIONS = {
  "user.disable": "Disabled the account",
  "user.enable": "Enabled the account",
  "role.grant": "Made admin",
  "role.revoke": "Removed admin",
  "user.plan": "Changed the plan",
};

function describe(e) {
  const label = ACTIONS[e.action] || e.action;
  const d = e.detail || {};
  const notes = [];
  if (d.sessions_ended) notes.push(`${d.sessions_ended} session${d.sessions_ended === 1 ? "" : "s"} ended`);
  if (d.already_disabled) notes.push("was already disabled");
  if (d.was_disabled === false) notes.push("was not disabled");
  if (d.from && d.to) notes.push(`${d.from} → ${d.to}`);
  return notes.length ? `${label} (${notes.join(", ")})` : label;
}

function who(e) {
  if (e.actor_email) return e.actor_email;
  if (e.action.startsWith("role.") && e.detail && e.detail.source) return `Confab (${e.detail.source})`;
  return "a deleted account";
}

export function startAudit({ forbidden }) {
  async function load() {
    let data;
    try {
      // Each service audits what it owns (accounts in auth, plans in the
      // backend); one list, newest first.
      const [auth, backend] = await Promise.all([api("/v1/auth/admin/audit?limit=200"), api("/v1/admin/audit?limit=200")]);
      const entries = [...auth.entries, ...backend.entries].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
      data = { entries: entries.slice(0, 200) };
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) return forbidden();
      return showBanner({ key: "audit", kind: "error", testid: "admin-audit-error", text: `Couldn't load the audit log. ${e.message}` });
    }
    const rows = $("audit-rows");
    rows.replaceChildren(...data.entries.map(row));
    rows.setAttribute("aria-busy", "false");
    $("audit-empty").hidden = data.entries.length > 0;
  }

  function row(e) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "admin-audit-row";
    tr.dataset.action = e.action;
    tr.dataset.target = e.target_email || "";
    const when = new Date(e.at);
    const cells = [
      [when.toLocaleString(), "admin-audit-when"],
      [who(e), "admin-audit-actor"],
      [describe(e), "admin-audit-action"],
      [e.target_email || "a deleted account", "admin-audit-target"],
      [e.ip || "—", "admin-audit-ip"],
    ];
    for (const [text, testid] of cells) {
      const td = document.createElement("td");
      td.dataset.testid = testid;
      td.textContent = text;
      tr.append(td);
    }
    tr.cells[0].title = when.toISOString();
    if (e.request_id) tr.cells[4].title = `request ${e.request_id}`;
    return tr;
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") load();
  });
  load();
}
