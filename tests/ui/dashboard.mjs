// The dashboard end to end in headless Chromium (Debian's), driven by
// Playwright. host/server/tests/dashboard.rs starts `switchyard serve`
// against two simulated providers, keeps quota traffic flowing, runs this
// script and answers its requests on stdin:
//   @fail P / @heal P  make provider P fail every request / answer again
//   @count P           how many messages P has taken (checked at P itself)
// Arguments: base URL, token (admin), screenshot path, a `read` token.
import { chromium } from "playwright-core";
import readline from "node:readline";

const [base, token, shot, readToken] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(q) {
  console.log(q);
  const { value } = await lines.next();
  return value;
}
const count = async (p) => Number(await ask(`@count ${p}`));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}
async function waitFor(what, f, ms = 8000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return console.log(`ok: ${what}`);
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const requests = [];
try {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
  const page = await context.newPage();
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => console.log(`page error: ${e}`));

  // Behind auth: the page asks for the token and shows nothing before it.
  await page.goto(`${base}/ui`);
  await page.waitForSelector("#login:not([hidden])");
  check(await page.locator("#main").isHidden(), "no data before the token");
  await page.fill("#token", "wrong-token");
  await page.click("#connect");
  await waitFor("a wrong token is refused", async () => (await page.textContent("#login-error")).includes("refused"));
  await page.fill("#token", token);
  await page.click("#connect");
  await waitFor("live after the token", async () => (await page.textContent("#status")) === "live");
  const row = (tag, p) => page.locator(`.definition[data-tag="${tag}"] .provider[data-provider="${p}"]`);
  await waitFor("the quota's providers are shown", async () => (await row("split", "primary").count()) === 1 && (await row("split", "backup").count()) === 1);
  check(!page.url().includes(token), "the token is not in the URL");

  // A run's trace, found by its idempotency key.
  await page.selectOption("#run-field", "key");
  await page.fill("#run-search", "order-e2e-42");
  await page.click("#run-go");
  await waitFor("the trace of order-e2e-42 is shown", async () => (await page.locator("#trace").isVisible()) && (await page.textContent("#trace")).includes("order-e2e-42"));

  // The primary starts failing: its breaker opens on the page and the
  // traffic moves to the backup.
  const breaker = (p) => row("split", p).locator(".breaker .badge").first().textContent();
  const share = async (p) => Number(((await row("split", p).locator(".split").textContent()).match(/live (\d+) %/) || [])[1] ?? NaN);
  await waitFor("traffic is split before the outage", async () => (await share("primary")) > 40);
  await ask("@fail primary");
  await waitFor("the primary's breaker shows open", async () => (await breaker("primary")) === "open", 6000);
  await waitFor("the traffic moves to the backup", async () => (await share("backup")) >= 80, 12000);
  // The history charts: success rate and p95 per provider over the last
  // hour, the newest minute live (the primary's success rate falls).
  const charts = page.locator('.definition[data-tag="split"] .history');
  await page.click("#range-hour");
  await waitFor("the split's history charts are drawn for both providers", async () =>
    (await charts.locator("svg.chart").count()) === 2
    && (await charts.locator('svg.chart[data-chart^="success rate"] :is(polyline, circle)').count()) >= 2
    && (await charts.locator('svg.chart[data-chart^="p95 latency"] :is(polyline, circle)').count()) >= 2, 12000);
  check((await charts.locator(".legend").textContent()).includes("primary"), "the charts name their providers");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  await page.click("#range-day");
  await waitFor("the charts switch to the last day", async () => (await charts.getAttribute("data-range")) === "day"
    && (await charts.locator('svg.chart[data-chart="success rate, last day"]').count()) === 1);
  await page.click("#range-hour");
  await ask("@heal primary");

  // Force the primary's breaker closed from the page: it gets traffic
  // again at once, though its breaker had opened.
  const primary = row("split", "primary");
  await primary.locator('button[data-action="force-closed"]').click();
  await waitFor("the breaker shows forced closed", async () => (await primary.locator(".breaker").textContent()).includes("forced closed"));
  let before = await count("primary");
  await sleep(1500);
  check((await count("primary")) > before + 5, "forced closed: the primary takes traffic (at the provider)");

  // Force it open: the primary gets nothing.
  await primary.locator('button[data-action="force-open"]').click();
  await waitFor("the breaker shows forced open", async () => (await primary.locator(".breaker").textContent()).includes("forced open"));
  await sleep(300);
  before = await count("primary");
  await sleep(1500);
  check((await count("primary")) <= before + 1, "forced open: the primary takes no traffic (at the provider)");
  await primary.locator('button[data-action="release"]').click();
  await waitFor("released: the breaker is its own again", async () => !(await primary.locator(".breaker").textContent()).includes("forced"));
  before = await count("primary");
  await sleep(1500);
  check((await count("primary")) > before + 5, "released: the primary takes traffic again");

  // Drain the backup: it takes nothing until restored.
  const backup = row("split", "backup");
  await backup.locator('button[data-action="drain"]').click();
  await waitFor("the backup shows drained", async () => (await backup.textContent()).includes("drained"));
  await sleep(300);
  before = await count("backup");
  await sleep(1500);
  check((await count("backup")) <= before + 1, "drained: the backup takes no traffic (at the provider)");
  await backup.locator('button[data-action="restore"]').click();
  await waitFor("the backup is restored", async () => !(await backup.textContent()).includes("drained"));
  before = await count("backup");
  await sleep(1500);
  check((await count("backup")) > before + 2, "restored: the backup takes traffic again");

  // Every action is in the audit list, by the dashboard.
  const audit = await page.textContent("#audit");
  for (const a of ["force-closed", "force-open", "release", "drain", "restore"]) {
    check(audit.includes(a), `the audit shows ${a}`);
  }
  check(audit.includes("by default (dashboard)"), "the audit names the token and the dashboard");

  // Run a healthcheck now from the page.
  await page.locator('.definition[data-tag="sms"] .provider[data-provider="primary"] button[data-action="check"]').click();
  await waitFor("the check is audited", async () => (await page.textContent("#audit")).includes("check-now"));

  // The token was entered once: a reload stays connected.
  await page.reload();
  await waitFor("still live after a reload", async () => (await page.textContent("#status")) === "live");

  // A `read` token sees the providers but is offered no action, and an
  // action sent with it anyway is refused by the server.
  const watcher = await (await browser.newContext({ viewport: { width: 1500, height: 1000 } })).newPage();
  watcher.on("request", (r) => requests.push(r.url()));
  await watcher.goto(`${base}/ui`);
  await watcher.fill("#token", readToken);
  await watcher.click("#connect");
  await waitFor("the read token is live", async () => (await watcher.textContent("#status")) === "live");
  await waitFor("it sees the quota's providers", async () => (await watcher.locator('.definition[data-tag="split"] .provider').count()) === 2);
  check((await watcher.textContent("#whoami")).includes("watcher · read"), "the page names the token and its role");
  check((await watcher.locator("#definitions button[data-action]").count()) === 0, "no operator button for a read token");
  const forced = await watcher.evaluate(async (t) => {
    const r = await fetch("/v1/admin/breakers/force", {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
      body: JSON.stringify({ breaker: "notify/dev/primary/send-message", state: "open" }),
    });
    return { status: r.status, body: await r.json() };
  }, readToken);
  check(forced.status === 403 && forced.body.code === "forbidden" && forced.body.message.includes("operate"), `a forced request with the read token is refused: ${JSON.stringify(forced)}`);

  // Nothing was fetched from anywhere but this server.
  const foreign = requests.filter((u) => !u.startsWith(base) && !u.startsWith("data:"));
  check(foreign.length === 0, `no request left the server (${foreign.join(", ")})`);
  console.log("@done");
} catch (e) {
  console.log(`failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  // stdin (the test's answers) would keep the process alive.
  process.exit();
}
