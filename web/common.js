// Shared by the board and the incident page: the operator's session (name and API token, in
// this tab's sessionStorage only), API calls with `Authorization: Bearer`, the sign-in dialog,
// and small DOM and formatting helpers. No framework: every piece of data reaches the page
// through `textContent` or a checked attribute, never as HTML.
"use strict";

const Triaged = (() => {
  const ACTOR_KEY = "triaged.actor";
  const TOKEN_KEY = "triaged.token";
  const SEVERITIES = ["critical", "major", "minor", "warning", "info"];
  const SESSION_EVENT = "triaged:session";

  // ---- session -------------------------------------------------------------------------------

  function session() {
    return {
      actor: sessionStorage.getItem(ACTOR_KEY) || "",
      token: sessionStorage.getItem(TOKEN_KEY) || "",
    };
  }

  function signIn(actor, token) {
    sessionStorage.setItem(ACTOR_KEY, actor);
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.dispatchEvent(new CustomEvent(SESSION_EVENT));
  }

  function signOut() {
    sessionStorage.removeItem(ACTOR_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    document.dispatchEvent(new CustomEvent(SESSION_EVENT));
  }

  // ---- API -----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body, fallback) {
      const text = body && body.error
        ? body.error + (body.detail ? ": " + body.detail : "")
        : fallback;
      super(text);
      this.status = status;
    }
    get needsSignIn() {
      return this.status === 401 || this.status === 403;
    }
  }

  // One JSON API call; throws ApiError with the server's `error: detail`.
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const { token } = session();
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, null, "cannot reach triaged (" + e.message + ")");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, data, "HTTP " + response.status);
    }
    return data;
  }

  // ---- DOM helpers ---------------------------------------------------------------------------

  // el("a", {href: url, class: "x"}, "text", child...): attributes set one by one, text as text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Only http(s) links from alert data become links: never `javascript:` and the like.
  function safeUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    try {
      const url = new URL(value, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function severityRank(severity) {
    const i = SEVERITIES.indexOf(severity);
    return i < 0 ? SEVERITIES.length : i;
  }

  function capitalize(s) {
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
  }

  // A severity badge: colour and text, so colour is never the only sign.
  function severityBadge(severity) {
    return el("span", { class: "badge sev sev-" + severity }, capitalize(severity));
  }

  function stateBadge(state) {
    return el("span", { class: "badge state state-" + state }, capitalize(state));
  }

  // 42 s, 5 m, 2 h 05 m, 3 d 4 h.
  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " m";
    const h = Math.floor(m / 60);
    if (h < 24) return h + " h " + String(m % 60).padStart(2, "0") + " m";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  // The age of `since` at minute resolution (under a minute: "< 1 m"), for lists that refresh.
  function age(since, now) {
    const seconds = ((now || Date.now()) - Date.parse(since)) / 1000;
    return seconds < 60 ? "< 1 m" : formatDuration(Math.floor(seconds / 60) * 60);
  }

  function formatTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  function timeEl(iso, text) {
    return el("time", { datetime: iso, title: formatTime(iso) }, text || formatTime(iso));
  }

  // Polite announcements for screen readers (new incidents, action results).
  function announce(message) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    // A fresh text node after clearing, so the same message twice is still read.
    setTimeout(() => { region.textContent = message; }, 50);
  }

  // Run `task` now and then every `ms` after each run finishes; paused while the tab is hidden.
  // Returns a function that runs it again at once (after an action).
  function every(ms, task) {
    let timer = null;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      timer = null;
      if (running) return;
      running = true;
      try {
        await task();
      } finally {
        running = false;
        if (!document.hidden) timer = setTimeout(tick, ms);
      }
    }
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        clearTimeout(timer);
        timer = null;
      } else if (!timer) {
        tick();
      }
    });
    tick();
    return tick;
  }

  // ---- sign-in dialog ------------------------------------------------------------------------

  let dialog = null;
  let pending = [];

  function buildDialog() {
    const actor = el("input", {
      id: "login-actor", name: "actor", autocomplete: "username", required: true, maxlength: 100,
    });
    const token = el("input", {
      id: "login-token", name: "token", type: "password", autocomplete: "current-password",
      maxlength: 4096,
    });
    const error = el("p", { class: "form-error", role: "alert" });
    const cancel = el("button", { type: "button", class: "button-secondary" }, "Cancel");
    const form = el("form", { method: "dialog" },
      el("h2", { id: "login-title" }, "Sign in"),
      el("p", { class: "hint" },
        "Your name goes on the incident timeline with every action. The token stays in this " +
        "tab's session storage only and is sent with every API call."),
      el("div", { class: "field" }, el("label", { for: "login-actor" }, "Your name"), actor),
      el("div", { class: "field" },
        el("label", { for: "login-token" }, "API token ",
          el("span", { class: "optional" }, "(if triaged asks for one)")),
        token),
      error,
      el("div", { class: "dialog-buttons" },
        el("button", { type: "submit" }, "Sign in"), cancel));
    const d = el("dialog", { class: "login", id: "login", "aria-labelledby": "login-title" }, form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = actor.value.trim();
      if (!name) {
        error.textContent = "Enter your name: it is recorded with every action.";
        actor.focus();
        return;
      }
      signIn(name, token.value.trim());
      token.value = "";
      error.textContent = "";
      d.close();
      const waiting = pending;
      pending = [];
      waiting.forEach((resolve) => resolve(name));
    });
    const dismiss = () => {
      const waiting = pending;
      pending = [];
      waiting.forEach((resolve) => resolve(null));
    };
    cancel.addEventListener("click", () => { d.close(); dismiss(); });
    d.addEventListener("cancel", dismiss);
    document.body.append(d);
    return { d, actor, error };
  }

  // Open the dialog; resolves to the operator's name, or null when cancelled.
  function askSignIn(message) {
    if (!dialog) dialog = buildDialog();
    dialog.actor.value = session().actor;
    dialog.error.textContent = message || "";
    if (!dialog.d.open) dialog.d.showModal();
    dialog.actor.focus();
    return new Promise((resolve) => pending.push(resolve));
  }

  // The operator's name, asking for it first when nobody signed in.
  async function requireActor() {
    return session().actor || askSignIn("Sign in to act on incidents.");
  }

  function renderSession() {
    const box = document.querySelector("[data-session]");
    if (!box) return;
    const text = box.querySelector("[data-session-text]");
    const button = box.querySelector("[data-session-button]");
    const { actor, token } = session();
    if (actor) {
      text.textContent = "Signed in as " + actor + (token ? " (with token)" : "");
      button.textContent = "Sign out";
    } else {
      text.textContent = "Not signed in";
      button.textContent = "Sign in";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.querySelector("[data-session-button]");
    if (button) {
      button.addEventListener("click", () => {
        if (session().actor) signOut();
        else askSignIn();
      });
    }
    renderSession();
  });
  document.addEventListener(SESSION_EVENT, renderSession);

  return {
    SEVERITIES, SESSION_EVENT, ApiError, api, session, signIn, signOut, askSignIn, requireActor,
    el, safeUrl, severityRank, capitalize, severityBadge, stateBadge, formatDuration, age,
    formatTime, timeEl, announce, every,
  };
})();
