// Sign-in providers on the settings page: the linked ones with "Unlink"
// (offered only while another way to sign in remains: a password or another
// provider), and "Link" for the others — a plain link through the provider,
// where the signed-in session is the proof that the account is yours.

import { ApiError, api, request } from "./api.js";
import { showBanner } from "./banners.js";
import { $ } from "./util.js";

async function offeredProviders() {
  const response = await request("/v1/auth/oidc/providers");
  if (!response.ok) return [];
  const body = await response.json();
  return body.providers || [];
}

function item(identity, canUnlink, onUnlink) {
  const li = document.createElement("li");
  li.className = "identity";
  li.dataset.testid = "identity";
  li.dataset.provider = identity.provider;
  const label = document.createElement("span");
  label.textContent = identity.email ? `${identity.provider_name} · ${identity.email}` : identity.provider_name;
  li.append(label);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn-ghost btn-sm";
  button.dataset.testid = `unlink-${identity.provider}`;
  button.textContent = "Unlink";
  button.disabled = !canUnlink;
  if (!canUnlink) button.title = "This is your only way to sign in.";
  button.addEventListener("click", () => onUnlink(identity, button));
  li.append(button);
  return li;
}

/** Fill the "Sign-in methods" card. */
export async function showIdentities() {
  const list = $("identity-list");
  const links = $("identity-links");
  if (!list || !links) return;
  const [mine, offered] = await Promise.all([api("/v1/auth/identities"), offeredProviders()]);
  const ways = mine.identities.length + (mine.has_password ? 1 : 0);
  const unlink = async (identity, button) => {
    button.disabled = true;
    try {
      await api(`/v1/auth/identities/${encodeURIComponent(identity.id)}`, { method: "DELETE" });
      showBanner({ key: "identities", kind: "info", testid: "identities-banner", text: `${identity.provider_name} is no longer linked.` });
    } catch (e) {
      const text = e instanceof ApiError ? e.message : "Couldn't unlink it. Try again.";
      showBanner({ key: "identities", kind: "error", testid: "identities-banner", text });
    }
    await showIdentities();
  };
  list.replaceChildren(...mine.identities.map((i) => item(i, ways > 1, unlink)));
  $("identity-password").hidden = !mine.has_password;
  $("identity-empty").hidden = mine.identities.length > 0;
  const linked = new Set(mine.identities.map((i) => i.provider));
  links.replaceChildren(
    ...offered
      .filter((p) => !linked.has(p.id))
      .map((p) => {
        const a = document.createElement("a");
        a.className = "btn btn-secondary btn-sm";
        a.dataset.testid = `link-${p.id}`;
        a.href = `${p.start_url}?intent=link`;
        a.textContent = `Link ${p.name}`;
        return a;
      }),
  );
  list.closest("[aria-busy]")?.removeAttribute("aria-busy");
  const just = new URLSearchParams(location.search).get("linked");
  const named = just && mine.identities.find((i) => i.provider === just);
  if (named) showBanner({ key: "identities", kind: "info", testid: "identities-banner", text: `${named.provider_name} is now linked: you can sign in with it.` });
}
