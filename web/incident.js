// One incident: details, member alerts (labels and annotations), the timeline, and the operator
// actions (acknowledge, assign, escalate, resolve) as forms that call the same API as everyone
// else. Reloaded every 5 s while the tab is visible, and at once after an action.
"use strict";

(() => {
  const { el, api } = Triaged;
  const POLL_MS = 5000;
  const TIERS = ["L1", "L2", "L3", "L4"];
  const EVENT_TEXT = {
    opened: "Opened",
    acknowledged: "Acknowledged",
    escalated: "Escalated",
    de_escalated: "De-escalated",
    assigned: "Assigned",
    resolved: "Resolved",
    reopened: "Reopened",
    flapping: "Flapping",
    severity_raised: "Severity raised",
  };

  const id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const path = "/api/v1/incidents/" + encodeURIComponent(id);
  const main = document.getElementById("main");
  const status = document.getElementById("live-status");
  const loadError = document.getElementById("load-error");
  const actionStatus = document.getElementById("action-status");
  let incident = null;

  document.title = id + " · triaged";
  document.getElementById("incident-title").textContent = id;

  function detail(term, ...value) {
    return [el("dt", {}, term), el("dd", {}, ...value)];
  }

  function none(text) {
    return el("span", { class: "muted" }, text || "none");
  }

  function link(url, text) {
    const safe = Triaged.safeUrl(url);
    return safe
      ? el("a", { href: safe, target: "_blank", rel: "noopener noreferrer" }, text || url)
      : (url ? String(url) : none());
  }

  // `acknowledged_at` is the first acknowledgement (MTTA counts from it), kept when an escalation
  // opens the incident again for its new tier: that tier has not acknowledged it yet.
  function acknowledgement(inc) {
    if (!inc.acknowledged_at) return [none("not yet")];
    if (inc.state !== "open") return [Triaged.timeEl(inc.acknowledged_at)];
    return [none("not yet at " + inc.tier), " (first acknowledged ",
      Triaged.timeEl(inc.acknowledged_at), ")"];
  }

  function renderDetails(inc) {
    const labels = inc.labels || {};
    document.getElementById("incident-title").textContent =
      inc.id + " · " + (labels.alertname || inc.group_key);
    document.title = inc.id + " · " + (labels.alertname || inc.group_key) + " · triaged";
    document.getElementById("incident-badges").replaceChildren(el("span", {},
      Triaged.severityBadge(inc.severity), " ",
      Triaged.stateBadge(inc.state), " ",
      el("span", { class: "badge tier" }, "Tier " + inc.tier),
      inc.flapping ? [" ", el("span", { class: "badge flapping" }, "Flapping")] : null));
    const now = Date.now();
    document.getElementById("details").replaceChildren(
      ...detail("Opened", Triaged.timeEl(inc.opened_at),
        " (" + Triaged.age(inc.opened_at, now) + " ago)"),
      ...detail("Tier", inc.tier + (inc.opened_tier !== inc.tier
        ? " (opened at " + inc.opened_tier + ")" : ""),
      " since ", Triaged.timeEl(inc.tier_since)),
      ...detail("Acknowledged", ...acknowledgement(inc)),
      ...detail("Resolved", inc.resolved_at ? Triaged.timeEl(inc.resolved_at) : none("not yet")),
      ...detail("Assignee", inc.assignee || none("unassigned")),
      ...detail("Team", labels.team || none()),
      ...detail("Service", labels.service || none()),
      ...detail("Alerts", inc.firing_count + " firing of " + inc.alert_count
        + (inc.silenced_count ? " (" + inc.silenced_count + " silenced)" : "")),
      ...detail("Runbook", inc.runbook ? link(inc.runbook) : none()),
      ...detail("Rule", inc.rule || none()),
      ...detail("Group", el("code", {}, inc.group_key)),
      ...(inc.ack_deadline && inc.state === "open"
        ? detail("Escalates unless acknowledged by", Triaged.timeEl(inc.ack_deadline)) : []),
      ...(inc.resolve_deadline && inc.state !== "resolved"
        ? detail("Escalates unless resolved by", Triaged.timeEl(inc.resolve_deadline)) : []),
      ...(inc.escalation_held_since && inc.state !== "resolved"
        ? detail("Escalation held: every firing alert silenced since",
          Triaged.timeEl(inc.escalation_held_since)) : []),
      ...(inc.vendor ? detail("Vendor", inc.vendor + (inc.vendor_ref ? " · case " + inc.vendor_ref : "")) : []),
      ...(inc.resolution_note ? detail("Resolution note", inc.resolution_note) : []),
      ...(inc.reopen_count ? detail("Reopened", inc.reopen_count + " times") : []));
  }

  function pairs(map, asLinks) {
    const entries = Object.entries(map || {});
    if (!entries.length) return none();
    if (!asLinks) {
      return el("ul", { class: "chips" },
        entries.map(([k, v]) => el("li", { class: "chip" }, el("span", { class: "chip-key" }, k), "=", v)));
    }
    return el("dl", { class: "annotations" },
      entries.map(([k, v]) => [el("dt", {}, k),
        el("dd", {}, Triaged.safeUrl(v) && /^https?:/i.test(v) ? link(v) : v)]));
  }

  function renderMembers(members) {
    document.getElementById("members-count").textContent = String(members.length);
    document.getElementById("members").replaceChildren(...members.map((m) => el("tr", {},
      el("th", { scope: "row" }, (m.labels || {}).alertname || "(no alertname)",
        el("br"), el("code", { class: "muted" }, m.fingerprint),
        m.generator_url && Triaged.safeUrl(m.generator_url)
          ? [el("br"), link(m.generator_url, "source")] : null),
      el("td", {}, el("span", { class: "badge alert-" + m.status }, Triaged.capitalize(m.status)),
        m.flapping ? [" ", el("span", { class: "badge flapping" }, "Flapping")] : null,
        // An alert is one record: one that fired again after this incident was over belongs
        // to the incident it opened since, and its status is the one it has there.
        m.incident && m.incident !== id
          ? [el("br"), "in ", el("a", { href: "/incident/" + encodeURIComponent(m.incident) },
            m.incident)] : null),
      el("td", {}, Triaged.severityBadge(m.severity)),
      el("td", {}, pairs(m.labels, false)),
      el("td", {}, pairs(m.annotations, true)),
      el("td", { class: "num" }, String(m.count)),
      el("td", {}, Triaged.timeEl(m.last_seen)))));
  }

  function renderTimeline(events) {
    document.getElementById("timeline").replaceChildren(...events.map((e) => el("li", {
      class: "event event-" + e.kind,
    },
      Triaged.timeEl(e.at),
      " ",
      el("strong", {}, EVENT_TEXT[e.kind] || e.kind),
      e.from || e.to ? " " + (e.from ? e.from + " → " : "to ") + (e.to || "") : "",
      // The L4 handover's entry names the vendor (the incident's own field is cleared once it
      // leaves L4).
      e.vendor ? " (vendor " + e.vendor + (e.vendor_ref ? " · case " + e.vendor_ref : "") + ")" : "",
      " by ", el("span", { class: "actor" }, e.actor),
      e.reason ? [": ", el("q", {}, e.reason)] : null)));
  }

  // Enable what the state allows, and offer only the tiers above for escalation.
  function renderActions(inc) {
    const resolved = inc.state === "resolved";
    const forms = document.querySelectorAll("form.action-form");
    const enabled = {
      ack: inc.state === "open",
      assign: !resolved,
      escalate: !resolved && inc.tier !== "L4",
      resolve: !resolved,
    };
    for (const form of forms) {
      const on = enabled[form.dataset.action];
      for (const control of form.elements) control.disabled = !on;
      form.classList.toggle("is-disabled", !on);
    }
    document.getElementById("actions-hint").textContent = resolved
      ? "This incident is resolved: nothing more to do."
      : inc.state === "acknowledged"
        ? "Acknowledged: assign, escalate or resolve it."
        : "Waiting for acknowledgement at " + inc.tier + ".";
    const select = document.getElementById("escalate-to");
    const above = TIERS.filter((t) => t > inc.tier);
    const current = [...select.options].map((o) => o.value);
    if (current.join() !== above.join()) {
      select.replaceChildren(...above.map((t) => el("option", { value: t },
        t === "L4" ? "L4 (vendor handover)" : t)));
      toggleVendor();
    }
  }

  function toggleVendor() {
    const toL4 = document.getElementById("escalate-to").value === "L4";
    for (const field of document.querySelectorAll("[data-vendor]")) field.hidden = !toL4;
    document.getElementById("escalate-vendor").required = toL4;
  }
  document.getElementById("escalate-to").addEventListener("change", toggleVendor);

  const rendered = {};
  function renderIfChanged(section, data, render) {
    const key = JSON.stringify(data);
    if (rendered[section] === key) return;
    rendered[section] = key;
    render();
  }

  async function load() {
    try {
      incident = await api("GET", path);
      // Sections are rebuilt only when their data changed, so a poll never moves the focus or
      // a screen reader's place.
      const { members, timeline, ...rest } = incident;
      renderIfChanged("details", [rest, Triaged.age(incident.opened_at)],
        () => renderDetails(incident));
      renderIfChanged("members", members, () => renderMembers(members || []));
      renderIfChanged("timeline", timeline, () => renderTimeline(timeline || []));
      renderActions(incident);
      loadError.hidden = true;
      document.getElementById("incident").hidden = false;
      main.setAttribute("aria-busy", "false");
      status.textContent = "Live · updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (e.needsSignIn && !Triaged.session().token) {
        Triaged.askSignIn("triaged asks for an API token.");
      }
      loadError.hidden = false;
      loadError.textContent = e.status === 404
        ? "No incident " + id + "."
        : "Cannot load " + id + ": " + e.message;
      status.textContent = e.status === 404 ? "" : "Retrying…";
    }
  }

  // ---- actions -------------------------------------------------------------------------------

  function bodyOf(form, actor) {
    const body = { actor };
    for (const field of form.elements) {
      if (!field.name || field.closest("[hidden]")) continue;
      const value = field.value.trim();
      if (value) body[field.name] = value;
    }
    return body;
  }

  const DONE = {
    ack: "Acknowledged",
    assign: "Assigned",
    escalate: "Escalated",
    resolve: "Resolved",
  };

  for (const form of document.querySelectorAll("form.action-form")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const action = form.dataset.action;
      const error = form.querySelector(".form-error");
      const button = form.querySelector("button[type=submit]");
      error.textContent = "";
      if (!form.reportValidity()) return;
      const actor = await Triaged.requireActor();
      if (!actor) {
        error.textContent = "Sign in first: actions are recorded with your name.";
        return;
      }
      const body = bodyOf(form, actor);
      button.disabled = true;
      try {
        await api("POST", path + "/" + action, body);
        form.reset();
        const message = DONE[action] + " " + id + " as " + actor + ".";
        actionStatus.textContent = message;
        Triaged.announce(message);
      } catch (e) {
        if (e.needsSignIn) Triaged.askSignIn("triaged refused the token: " + e.message);
        error.textContent = e.message;
      }
      button.disabled = false;
      toggleVendor();
      await refresh();
    });
  }

  document.addEventListener(Triaged.SESSION_EVENT, () => refresh());
  const refresh = Triaged.every(POLL_MS, load);
})();
