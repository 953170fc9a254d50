// Drives the NOC board in Debian's headless Chromium (playwright-core, no browser download).
// Run by tests/board.rs against a real triaged started with the rules of rules.toml (beside this
// file); on its own, against such a daemon:
//   TRIAGED_URL=http://127.0.0.1:9595 node tests/browser/board.spec.mjs
//
// Environment: TRIAGED_URL (required), CHROMIUM (default /usr/bin/chromium), ARTIFACTS (where the
// screenshots go, default ../../target/test-artifacts), TRIAGED_TOKEN (what the operator signs in
// with). Prints one JSON line with the incidents it acted on, for the Rust side to check through
// the API; exits non-zero with the reason on any failure.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.TRIAGED_URL;
if (!base) throw new Error("TRIAGED_URL is not set");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const artifacts = resolve(process.env.ARTIFACTS || join(here, "../../target/test-artifacts"));
const token = process.env.TRIAGED_TOKEN || "board-test-token";
const actor = "noc-operator";
const WAIT = 15_000;
// A hard stop, whatever hangs.
setTimeout(() => {
  console.error("board.spec: gave up after 150 s");
  process.exit(3);
}, 150_000).unref();

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function postAlert(labels, annotations, status = "firing") {
  const response = await fetch(base + "/api/v1/alerts", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
    body: JSON.stringify({ alerts: [{ labels, annotations, status }] }),
  });
  const body = await response.json();
  check(response.ok, "POST /api/v1/alerts: " + JSON.stringify(body));
  check(body.incidents.length === 1, "expected one incident: " + JSON.stringify(body));
  return body.incidents[0];
}

// Every form control has a label (an accessible name), on whatever the page shows now.
async function checkLabels(page, where) {
  const unlabelled = await page.$$eval("input, select, textarea", (els) =>
    els.filter((e) => e.type !== "hidden" && !(e.labels && e.labels.length) &&
      !e.getAttribute("aria-label")).map((e) => e.outerHTML));
  check(unlabelled.length === 0, where + ": controls without a label: " + unlabelled.join(" "));
}

mkdirSync(artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "triaged-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
const authorizations = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT);
  // A CSP violation, a script error or a failed asset shows up here.
  // Before sign-in the board's reads are refused (401) on purpose; after it, none may be.
  let signedIn = false;
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (!signedIn && m.text().includes("status of 401")) return;
    problems.push("console: " + m.text());
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("request", (r) => {
    if (new URL(r.url()).pathname.startsWith("/api/")) {
      authorizations.push({ path: new URL(r.url()).pathname, method: r.method(), afterSignIn: signedIn,
        auth: r.headers().authorization || null });
    }
  });

  // ---- the board loads, and the operator signs in -----------------------------------------
  // The daemon runs with authentication on: the board's reads need the token too, so it goes
  // live only after sign-in.
  await page.goto(base + "/");
  await checkLabels(page, "board");
  // The first poll is refused (401), which opens the sign-in dialog by itself.
  await page.getByRole("dialog").waitFor();
  await page.getByLabel("Your name").fill(actor);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("dialog").getByRole("button", { name: "Sign in" }).click();
  await page.locator("[data-session-text]", { hasText: "Signed in as " + actor }).waitFor();
  await page.locator("#live-status", { hasText: "Live" }).waitFor();
  signedIn = true;
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem("triaged.token"),
    local: Object.keys(localStorage).length,
  }));
  check(stored.session === token, "the token is not in sessionStorage");
  check(stored.local === 0, "something was written to localStorage");
  await checkLabels(page, "board with the sign-in dialog");

  // ---- two incidents arrive while the board is open: they appear without a reload ---------
  await page.evaluate(() => { window.__sameDocument = true; });
  const critical = await postAlert(
    { alertname: "BoardLiveCheckout", service: "checkout", team: "payments",
      instance: "web-1", severity: "critical" },
    { summary: "checkout errors above 5%", runbook_url: "https://runbooks.example/checkout" });
  const warning = await postAlert(
    { alertname: "BoardLiveLatency", service: "search", team: "web", severity: "warning" },
    { summary: "p99 latency high" });
  const criticalCard = page.locator(`.column[data-tier="L3"] li[data-incident-id="${critical}"]`);
  const warningCard = page.locator(`.column[data-tier="L1"] li[data-incident-id="${warning}"]`);
  await criticalCard.waitFor();
  await warningCard.waitFor();
  check(await page.evaluate(() => window.__sameDocument === true), "the board reloaded");
  const text = await criticalCard.innerText();
  for (const want of ["Critical", "Open", "BoardLiveCheckout", "payments", "unassigned", "Runbook"]) {
    check(text.includes(want), `the card of ${critical} lacks ${want}: ${text}`);
  }

  // ---- filters hide and show, and live in the URL -----------------------------------------
  await page.getByLabel("Team").selectOption("payments");
  await warningCard.waitFor({ state: "detached" });
  check(await criticalCard.isVisible(), "the payments incident vanished under its own filter");
  check(page.url().includes("team=payments"), "the filter is not in the URL: " + page.url());
  await page.getByLabel("Team").selectOption("");
  await page.getByLabel("Severity").selectOption("major");
  await warningCard.waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Clear filters" }).click();
  await warningCard.waitFor();

  // ---- acknowledge with a click -----------------------------------------------------------
  await page.getByRole("button", { name: "Acknowledge " + critical, exact: true }).click();
  await page.locator(`li[data-incident-id="${critical}"][data-state="acknowledged"]`).waitFor();
  await page.locator('#summary-tiers [data-tier="L3"] [data-note]', { hasText: "+ 1 acked" })
    .waitFor();
  const ack = authorizations.find((a) => a.method === "POST" && a.path.endsWith("/ack"));
  check(ack, "no acknowledge request was seen");
  check(ack.auth === "Bearer " + token, "the acknowledge request carried " + ack.auth);
  await page.screenshot({ path: join(artifacts, "board.png"), fullPage: true });

  // ---- the incident page: members, timeline, assign ---------------------------------------
  await page.getByRole("link", { name: "BoardLiveCheckout" }).click();
  await page.waitForURL("**/incident/" + critical);
  await page.locator("#members tr", { hasText: "BoardLiveCheckout" }).waitFor();
  const member = await page.locator("#members tr").first().innerText();
  for (const want of ["team=payments", "instance=web-1", "checkout errors above 5%", "Firing"]) {
    check(member.includes(want), `the member row lacks ${want}: ${member}`);
  }
  await page.locator("#timeline li", { hasText: "Acknowledged" }).filter({ hasText: actor })
    .waitFor();
  await checkLabels(page, "incident page");
  await page.getByLabel("Assignee").fill("bob");
  await page.getByRole("button", { name: "Assign" }).click();
  await page.locator("#action-status", { hasText: "Assigned" }).waitFor();
  await page.locator("#details dd", { hasText: "bob" }).waitFor();

  // ---- escalate and resolve the other one, from the keyboard ------------------------------
  await page.goto(base + "/incident/" + warning);
  await page.locator("#members tr", { hasText: "BoardLiveLatency" }).waitFor();
  await page.getByRole("button", { name: "Acknowledge", exact: true }).click();
  await page.locator("#action-status", { hasText: "Acknowledged" }).waitFor();
  await page.getByLabel("To tier").selectOption("L2");
  await page.getByLabel("Reason", { exact: true }).fill("search team needed");
  await page.getByRole("button", { name: "Escalate" }).focus();
  await page.keyboard.press("Enter");
  await page.locator("#timeline li", { hasText: "Escalated" }).filter({ hasText: "L1 → L2" })
    .waitFor();
  // Acknowledged at L1, escalated: L2 has not acknowledged it; the first acknowledgement stays.
  const acknowledged = page.locator("#details dt", { hasText: /^Acknowledged$/ })
    .locator("xpath=following-sibling::dd[1]");
  await acknowledged.filter({ hasText: "not yet at L2" }).waitFor();
  const ackText = await acknowledged.innerText();
  check(ackText.includes("first acknowledged"), "the L1 acknowledgement is not shown: " + ackText);
  await page.locator("#details dt", { hasText: "Escalates unless acknowledged by" }).waitFor();
  await page.getByLabel("Resolution note").fill("index rebuilt");
  await page.getByRole("button", { name: "Resolve" }).click();
  await page.locator("#timeline li", { hasText: "Resolved" }).waitFor();
  await page.locator("#actions-hint", { hasText: "resolved" }).waitFor();
  await page.screenshot({ path: join(artifacts, "incident.png"), fullPage: true });

  // ---- a member of a resolved incident that fired again since, in a newer one -------------
  const cronLabels = { alertname: "BoardLiveCron", service: "batch", severity: "warning" };
  const first = await postAlert(cronLabels, {});
  let second = first;
  // A firing within the 1 ms reopen window reopens it instead: resolve and fire again.
  for (let tries = 0; second === first && tries < 20; tries++) {
    check(await postAlert(cronLabels, {}, "resolved") === first, "the resolution went elsewhere");
    second = await postAlert(cronLabels, {});
  }
  check(second !== first, `firing again after ${first} resolved opened no new incident`);
  await page.goto(base + "/incident/" + first);
  const moved = page.locator("#members tr", { hasText: "BoardLiveCron" });
  await moved.waitFor();
  await moved.getByRole("link", { name: second, exact: true }).click();
  await page.waitForURL("**/incident/" + second);
  await page.locator("#members tr", { hasText: "BoardLiveCron" }).waitFor();
  check(await page.locator("#members tr a", { hasText: /^INC-/ }).count() === 0,
    "a member of its own incident links elsewhere");

  const unauthorised = authorizations.filter((a) => a.auth !== "Bearer " + token &&
    (a.method === "POST" || a.afterSignIn));
  check(unauthorised.length === 0, "actions without the token: " + JSON.stringify(unauthorised));
  check(problems.length === 0, "the browser reported problems:\n" + problems.join("\n"));
  console.log(JSON.stringify({ acknowledged: critical, resolved: warning, actor }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
