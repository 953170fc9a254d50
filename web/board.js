// The NOC board: active incidents in one column per tier, live by short polling of
// `GET /api/v1/incidents?state=active` (every 2 s, at once after an action, paused while the tab
// is hidden), the summary strip from `GET /api/v1/summary`, and filters kept in the URL.
"use strict";

(() => {
  const { el, api } = Triaged;
  const POLL_MS = 2000;
  // The summary walks a day of incidents: every fifth poll is plenty for a glance.
  const SUMMARY_EVERY = 5;
  const PAGE_LIMIT = 1000;
  const MAX_PAGES = 5;
  const TIERS = ["L1", "L2", "L3", "L4"];

  const board = document.getElementById("board");
  const status = document.getElementById("live-status");
  const truncatedBanner = document.getElementById("board-truncated");
  const filtersForm = document.getElementById("filters");
  const filterInputs = {
    team: document.getElementById("filter-team"),
    service: document.getElementById("filter-service"),
    severity: document.getElementById("filter-severity"),
  };

  let incidents = [];
  let seen = null; // ids shown by the previous poll; null before the first
  let polls = 0;

  // ---- filters, kept in the query string so a filtered board can be shared -----------------

  function filtersFromUrl() {
    const params = new URLSearchParams(location.search);
    return {
      team: params.get("team") || "",
      service: params.get("service") || "",
      severity: params.get("severity") || "",
    };
  }

  let filters = filtersFromUrl();

  function writeFiltersToUrl() {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  function matches(incident) {
    const labels = incident.labels || {};
    if (filters.team && labels.team !== filters.team) return false;
    if (filters.service && labels.service !== filters.service) return false;
    if (filters.severity &&
        Triaged.severityRank(incident.severity) > Triaged.severityRank(filters.severity)) {
      return false;
    }
    return true;
  }

  // The team and service choices: the values present now, plus the one selected.
  function fillChoices(select, values, selected, allText) {
    const wanted = [...new Set([...values, ...(selected ? [selected] : [])])].sort();
    const current = [...select.options].slice(1).map((o) => o.value);
    if (current.join("\n") !== wanted.join("\n")) {
      select.replaceChildren(el("option", { value: "" }, allText),
        ...wanted.map((v) => el("option", { value: v }, v)));
    }
    select.value = selected;
  }

  function renderFilters() {
    const values = (key) => incidents.map((i) => (i.labels || {})[key]).filter(Boolean);
    fillChoices(filterInputs.team, values("team"), filters.team, "All teams");
    fillChoices(filterInputs.service, values("service"), filters.service,
      "All services");
    filterInputs.severity.value = filters.severity;
  }

  filtersForm.addEventListener("change", () => {
    filters = {
      team: filterInputs.team.value,
      service: filterInputs.service.value,
      severity: filterInputs.severity.value,
    };
    writeFiltersToUrl();
    render();
  });
  filtersForm.addEventListener("reset", (event) => {
    event.preventDefault();
    filters = { team: "", service: "", severity: "" };
    writeFiltersToUrl();
    render();
  });
  filtersForm.addEventListener("submit", (event) => event.preventDefault());

  // ---- cards ---------------------------------------------------------------------------------

  function title(incident) {
    const labels = incident.labels || {};
    return labels.alertname || incident.group_key;
  }

  function meta(term, ...value) {
    return [el("dt", {}, term), el("dd", {}, ...value)];
  }

  function card(incident, isNew) {
    const labels = incident.labels || {};
    const link = "/incident/" + encodeURIComponent(incident.id);
    const runbook = Triaged.safeUrl(incident.runbook);
    const acknowledged = incident.state === "acknowledged";
    const actions = el("div", { class: "card-actions" });
    if (runbook) {
      actions.append(el("a", {
        class: "button-link", href: runbook, target: "_blank", rel: "noopener noreferrer",
        "aria-label": "Runbook for " + incident.id,
      }, "Runbook"));
    }
    if (!acknowledged) {
      const ack = el("button", {
        type: "button", class: "button-ack", "data-action": "ack", "data-id": incident.id,
        "aria-label": "Acknowledge " + incident.id,
        dataset: { focusKey: "ack:" + incident.id },
      }, "Acknowledge");
      actions.append(ack);
    }
    const firing = incident.firing_count;
    const alerts = incident.alert_count;
    return el("li", {
      class: "card sev-edge-" + incident.severity + (isNew ? " is-new" : ""),
      "data-incident-id": incident.id,
      "data-state": incident.state,
    },
      el("div", { class: "card-head" },
        Triaged.severityBadge(incident.severity),
        Triaged.stateBadge(incident.state),
        incident.flapping ? el("span", { class: "badge flapping" }, "Flapping") : null,
        el("span", { class: "card-id" }, incident.id)),
      el("h3", { class: "card-title" },
        el("a", { href: link, dataset: { focusKey: "open:" + incident.id } }, title(incident))),
      el("dl", { class: "card-meta" },
        meta("Age", Triaged.timeEl(incident.opened_at, Triaged.age(incident.opened_at))),
        meta("Alerts", firing === alerts ? String(alerts) : firing + " firing of " + alerts),
        meta("Assignee", incident.assignee || el("span", { class: "muted" }, "unassigned")),
        meta("Team", labels.team || el("span", { class: "muted" }, "none")),
        labels.service ? meta("Service", labels.service) : null),
      actions);
  }

  // What a card shows: a card is rebuilt only when this changes.
  function signature(incident) {
    return JSON.stringify([incident.state, incident.severity, incident.flapping,
      incident.alert_count, incident.firing_count, incident.assignee, incident.runbook,
      incident.labels, Triaged.age(incident.opened_at)]);
  }

  // Put `items` into `list` in order, keeping unchanged cards as they are (and focus where it
  // was, should a focused card be rebuilt or moved).
  function reconcile(list, items) {
    const focusKey = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.focusKey : undefined;
    const existing = new Map([...list.children].map((n) => [n.dataset.incidentId, n]));
    const wanted = items.map(({ incident, isNew }) => {
      const sig = signature(incident);
      const old = existing.get(incident.id);
      if (old && old.dataset.sig === sig) return old;
      const node = card(incident, isNew);
      node.dataset.sig = sig;
      return node;
    });
    const keep = new Set(wanted);
    for (const node of [...list.children]) if (!keep.has(node)) node.remove();
    wanted.forEach((node, i) => {
      if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
    });
    if (focusKey && !document.activeElement.isConnected) {
      // The same control on the rebuilt card, else its title link (an acknowledged card has no
      // Acknowledge button any more).
      const id = focusKey.slice(focusKey.indexOf(":") + 1);
      const again = list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`) ||
        list.querySelector(`[data-focus-key="${CSS.escape("open:" + id)}"]`);
      if (again) again.focus();
    }
  }

  function render(newIds) {
    renderFilters();
    const shown = incidents.filter(matches);
    for (const tier of TIERS) {
      const column = board.querySelector(`.column[data-tier="${tier}"]`);
      const items = shown
        .filter((i) => i.tier === tier)
        .sort((a, b) => Triaged.severityRank(a.severity) - Triaged.severityRank(b.severity) ||
          Date.parse(a.opened_at) - Date.parse(b.opened_at))
        .map((incident) => ({ incident, isNew: newIds ? newIds.has(incident.id) : false }));
      reconcile(column.querySelector("[data-cards]"), items);
      column.querySelector("[data-count]").textContent = String(items.length);
      column.querySelector("[data-empty]").hidden = items.length > 0;
      column.querySelector("[data-empty]").textContent = incidents.some((i) => i.tier === tier)
        ? "No incidents match the filters." : "No open incidents.";
    }
  }

  // ---- actions -------------------------------------------------------------------------------

  board.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action='ack']");
    if (!button) return;
    const id = button.dataset.id;
    if (button.getAttribute("aria-disabled") === "true") return;
    const actor = await Triaged.requireActor();
    if (!actor) return;
    // Not `disabled`: that would drop the keyboard focus from the button.
    button.setAttribute("aria-disabled", "true");
    button.textContent = "Acknowledging…";
    try {
      await api("POST", "/api/v1/incidents/" + encodeURIComponent(id) + "/ack",
        { actor, reason: "acknowledged on the NOC board" });
      Triaged.announce(id + " acknowledged by " + actor);
      setStatus("ok", id + " acknowledged.");
    } catch (e) {
      if (e.needsSignIn) Triaged.askSignIn("triaged refused the token: " + e.message);
      setStatus("error", "Could not acknowledge " + id + ": " + e.message);
      button.removeAttribute("aria-disabled");
      button.textContent = "Acknowledge";
    }
    polls = 0; // the summary too
    refresh();
  });

  // ---- polling -------------------------------------------------------------------------------

  function setStatus(kind, text) {
    status.textContent = text;
    status.dataset.kind = kind;
  }

  async function loadIncidents() {
    const all = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      let path = "/api/v1/incidents?state=active&limit=" + PAGE_LIMIT;
      if (cursor) path += "&cursor=" + encodeURIComponent(cursor);
      const body = await api("GET", path);
      all.push(...body.incidents);
      cursor = body.next_cursor;
      if (!cursor) return { all, truncated: false };
    }
    return { all, truncated: true };
  }

  function renderSummary(summary) {
    for (const tier of TIERS) {
      const stat = document.querySelector(`#summary-tiers [data-tier="${tier}"]`);
      const counts = summary.tiers[tier] || { open: 0, acknowledged: 0 };
      stat.querySelector("[data-value]").textContent = String(counts.open);
      stat.querySelector("[data-note]").textContent = "+ " + counts.acknowledged + " acked";
      stat.classList.toggle("stat-alarm", counts.open > 0 && (tier === "L3" || tier === "L4"));
    }
    const w = summary.window;
    document.getElementById("stat-mtta").textContent = Triaged.formatDuration(w.mtta_seconds);
    document.getElementById("stat-mttr").textContent = Triaged.formatDuration(w.mttr_seconds);
    document.getElementById("stat-escalation").textContent = w.escalation_rate === null
      ? "–" : Math.round(w.escalation_rate * 100) + " %";
    document.getElementById("stat-escalation-note").textContent =
      w.escalated + " of " + w.opened + (w.truncated ? " (newest only)" : "");
  }

  async function poll() {
    try {
      const wantSummary = polls % SUMMARY_EVERY === 0;
      polls++;
      const [{ all, truncated }, summary] = await Promise.all([
        loadIncidents(),
        wantSummary ? api("GET", "/api/v1/summary") : Promise.resolve(null),
      ]);
      incidents = all;
      const ids = new Set(all.map((i) => i.id));
      const fresh = seen ? new Set([...ids].filter((id) => !seen.has(id))) : new Set();
      seen = ids;
      render(fresh);
      if (summary) renderSummary(summary);
      for (const id of fresh) {
        const incident = all.find((i) => i.id === id);
        Triaged.announce(`New incident ${id} at ${incident.tier}, ${incident.severity}: ` +
          title(incident));
      }
      truncatedBanner.hidden = !truncated;
      truncatedBanner.textContent = truncated
        ? `Showing the newest ${all.length} active incidents only.` : "";
      board.setAttribute("aria-busy", "false");
      setStatus("live", "Live · updated " + new Date().toLocaleTimeString());
    } catch (e) {
      if (e.needsSignIn) {
        setStatus("error", "triaged wants a token: sign in to see incidents.");
        if (!Triaged.session().token) Triaged.askSignIn("triaged asks for an API token.");
      } else {
        setStatus("error", "Cannot load incidents (" + e.message + "); retrying.");
      }
    }
  }

  // After sign-in the token may open what was refused: refresh at once, with the summary.
  document.addEventListener(Triaged.SESSION_EVENT, () => { polls = 0; refresh(); });

  const refresh = Triaged.every(POLL_MS, poll);
})();
