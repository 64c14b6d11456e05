// Your data: exports (downloaded through the browser's own download
// manager, under the file name the server chose), import of a JSON export,
// and deleting conversations or the whole account.

import { ApiError, api, readError, refreshToken, request, session } from "./api.js";

/** The file name in a `Content-Disposition: attachment; filename="…"`. */
function fileName(disposition) {
  const m = /filename="([^"]+)"/.exec(disposition || "");
  return m ? m[1] : null;
}

/** Fetch an export with the in-memory access token (a plain link could not
 *  carry it) and save it as a download. Returns the file name. */
export async function download(path) {
  const get = () => request(path, { token: session.token, headers: { Accept: "*/*" } });
  let response = await get();
  if (response.status === 401) {
    await refreshToken();
    response = await get();
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));
  const name = fileName(response.headers.get("Content-Disposition")) || "confab-export";
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own copy once started; give it time to begin.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}

export const exportAll = (format) => download(`/v1/export?format=${encodeURIComponent(format)}`);

export const exportThread = (id, format) =>
  download(`/v1/threads/${encodeURIComponent(id)}/export?format=${encodeURIComponent(format)}`);

/** Send a JSON export file as it is (the browser streams it from disk). */
export async function importFile(file) {
  const post = () =>
    fetch("/v1/import", {
      method: "POST",
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: file,
    }).catch(() => {
      throw new ApiError(0, { message: "We couldn't reach Confab. Check your connection." });
    });
  let response = await post();
  if (response.status === 401) {
    await refreshToken();
    response = await post();
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));
  return response.json();
}

export const renameThread = (id, title) =>
  api(`/v1/threads/${encodeURIComponent(id)}`, { method: "PATCH", body: { title } });

export const deleteThread = (id) => api(`/v1/threads/${encodeURIComponent(id)}`, { method: "DELETE" });

export const deleteAllThreads = () => api("/v1/threads/delete", { method: "POST", body: { all: true } });

/** Delete the account (auth checks the password). Resolves with auth's
 *  confirmation; the session is gone on the server afterwards. */
export async function deleteAccount(password) {
  const call = () =>
    request("/v1/auth/account", { method: "DELETE", body: password ? { password } : {}, token: session.token });
  let response = await call();
  // The page may have been opened a moment ago, before its first token.
  if (response.status === 401) {
    await refreshToken();
    response = await call();
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));
  return response.json();
}
