// The user list: accounts from auth (search by email or name; sessions,
// last active, status), each with its plan and last message from the
// backend, and Disable / Enable. Disabling asks once more, then ends every
// session of the account at once (its sockets close, its tokens are
// refused) and it cannot sign in until it is enabled again.

import { ApiError, api } from "./api.js";
import { showBanner } from "./banners.js";
import { $ } from "./util.js";

const DEBOUNCE_MS = 200;

export function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function latest(a, b) {
  if (!a) return b || null;
  if (!b) return a;
  return Date.parse(a) >= Date.parse(b) ? a : b;
}

export function startUsers({ me, forbidden }) {
  const input = $("user-search");
  input.value = new URLSearchParams(location.search).get("q") || "";
  let timer = 0;
  let generation = 0;

  const fail = (e, what) => {
    if (e instanceof ApiError && e.status === 403) return forbidden();
    showBanner({ key: "users", kind: "error", testid: "admin-users-error", text: `Couldn't ${what}. ${e.message}` });
  };

  async function load() {
    const mine = ++generation;
    const q = input.value.trim();
    history.replaceState(null, "", q ? `${location.pathname}?q=${encodeURIComponent(q)}` : location.pathname);
    let data;
    let plans = new Map();
    let choices = [];
    try {
      data = await api(`/v1/auth/admin/users?q=${encodeURIComponent(q)}&limit=50`);
      const ids = data.users.map((u) => u.id);
      if (ids.length) {
        const p = await api(`/v1/admin/profiles?ids=${ids.join(",")}`);
        plans = new Map(p.profiles.map((x) => [x.id, x]));
        choices = p.plans || [];
      }
    } catch (e) {
      return fail(e, "load the users");
    }
    if (mine !== generation) return;
    render(data, plans, choices);
  }

  function render(data, plans, choices) {
    const rows = $("user-rows");
    rows.replaceChildren(...data.users.map((u) => row(u, plans.get(u.id), choices)));
    rows.setAttribute("aria-busy", "false");
    $("user-empty").hidden = data.users.length > 0;
    const n = data.users.length;
    $("user-count").textContent = `${n}${data.more ? "+" : ""} account${n === 1 ? "" : "s"}${input.value.trim() ? " match" : ""}`;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function row(u, profile, choices) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "admin-user-row";
    tr.dataset.userId = u.id;
    tr.dataset.email = u.email;
    tr.dataset.status = u.status;

    const name = cell(u.display_name);
    name.dataset.testid = "admin-user-name";
    if (u.role === "admin") {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "Admin";
      name.append(" ", badge);
    }
    const email = cell(u.email, "cell-email");
    email.dataset.testid = "admin-user-email";
    const plan = cell(profile ? profile.plan : "—");
    plan.dataset.testid = "admin-user-plan";
    if (profile && choices.length) {
      // Changing the plan: through the backend's plans domain, audited.
      const select = document.createElement("select");
      select.className = "plan-select";
      select.dataset.testid = "admin-user-plan-select";
      select.setAttribute("aria-label", `Plan of ${u.email}`);
      for (const id of choices) {
        const option = document.createElement("option");
        option.value = id;
        option.textContent = id;
        option.selected = id === profile.plan;
        select.append(option);
      }
      select.addEventListener("change", () => changePlan(u, select.value));
      plan.replaceChildren(select);
      plan.dataset.plan = profile.plan;
    }
    const sessions = cell(String(u.sessions), "num");
    sessions.dataset.testid = "admin-user-sessions";
    const seen = latest(u.last_active_at, profile && profile.last_message_at);
    const active = cell(ago(seen));
    if (seen) active.title = new Date(seen).toLocaleString();
    const status = document.createElement("td");
    const pill = document.createElement("span");
    pill.className = `status-pill status-${u.status}`;
    pill.dataset.testid = "admin-user-status";
    pill.textContent = u.status === "disabled" ? "Disabled" : "Active";
    status.append(pill);

    const actions = document.createElement("td");
    actions.className = "cell-actions";
    if (u.id === me.id) {
      actions.append(Object.assign(document.createElement("span"), { className: "muted", textContent: "You" }));
    } else if (u.status === "disabled") {
      actions.append(button("Enable", "admin-user-enable", "btn-sm", () => act(u, "enable")));
    } else {
      const ask = document.createElement("span");
      ask.className = "confirm-ask";
      ask.hidden = true;
      const disable = button("Disable", "admin-user-disable", "btn-sm btn-ghost", () => {
        disable.hidden = true;
        ask.hidden = false;
        confirm.focus();
      });
      const confirm = button("Disable and sign out", "admin-user-confirm", "btn-sm btn-danger", () => act(u, "disable"));
      const cancel = button("Cancel", "admin-user-cancel", "btn-sm btn-ghost", () => {
        ask.hidden = true;
        disable.hidden = false;
      });
      ask.append(confirm, cancel);
      actions.append(disable, ask);
    }
    tr.append(name, email, plan, sessions, active, status, actions);
    return tr;
  }

  function button(text, testid, cls, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `btn ${cls}`;
    b.dataset.testid = testid;
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  async function changePlan(user, plan) {
    try {
      const r = await api(`/v1/admin/users/${encodeURIComponent(user.id)}/plan`, { method: "POST", body: { plan } });
      showBanner({ key: "users", kind: "info", testid: "admin-users-notice", text: `${user.email} is on ${r.plan} (was ${r.previous}).` });
    } catch (e) {
      fail(e, `change the plan of ${user.email}`);
    }
    load();
  }

  async function act(user, action) {
    try {
      const r = await api(`/v1/auth/admin/users/${encodeURIComponent(user.id)}/${action}`, { method: "POST", body: {} });
      const text =
        action === "disable"
          ? `${r.email} is disabled; ${r.sessions_ended} session${r.sessions_ended === 1 ? "" : "s"} ended.`
          : `${r.email} can sign in again.`;
      showBanner({ key: "users", kind: "info", testid: "admin-users-notice", text });
    } catch (e) {
      fail(e, `${action} ${user.email}`);
    }
    load();
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(load, DEBOUNCE_MS);
  });
  $("user-search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    load();
  });
  load();
}
