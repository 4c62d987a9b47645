// Browser check of proxyctl's web UI: playwright-core drives Debian's
// chromium against a running `proxyctl forward http`. Run by
// cmd/proxyctl/ui_test.go:
//   node ui.mjs --admin HOST:PORT --proxy HOST:PORT [--token T] [--screenshots DIR] [--bulk N]
// Exits non-zero (with the reason on stderr) when a check fails.
import { readFileSync } from "node:fs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    admin: { type: "string" },
    proxy: { type: "string" },
    token: { type: "string", default: "" },
    screenshots: { type: "string", default: "" },
    bulk: { type: "string", default: "1000" },
    session: { type: "string", default: "ui-e2e" },
  },
});
if (!opt.admin || !opt.proxy) {
  console.error("usage: node ui.mjs --admin HOST:PORT --proxy HOST:PORT [--token T] [--screenshots DIR] [--bulk N]");
  process.exit(2);
}
const adminURL = "http://" + opt.admin;
const proxyURL = "http://" + opt.proxy;
const session = opt.session;
const bulk = Number(opt.bulk);

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}

function log(msg) {
  console.log("ui.mjs: " + msg);
}

async function adminCall(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (opt.token) headers.Authorization = "Bearer " + opt.token;
  const r = await fetch(adminURL + path, { method, headers, body: body && JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, text };
}

async function viaProxy(path) {
  const r = await fetch(proxyURL + path, { headers: { "X-Proxy-Session": session } });
  return { status: r.status, text: await r.text() };
}

async function shot(page, name) {
  if (!opt.screenshots) return;
  mkdirSync(opt.screenshots, { recursive: true });
  await page.screenshot({ path: join(opt.screenshots, name) });
  log("screenshot " + name);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: FLAGS });
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 820 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);

  // Console errors fail the run. Before the token is entered the UI's first
  // API call gets the 401 that makes it ask; Chromium logs that failed load,
  // which is expected and the only error tolerated.
  const errors = [];
  let tokenGiven = !opt.token;
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (!tokenGiven && /status of 401/.test(m.text())) return;
    errors.push("console: " + m.text());
  });
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  let dialogs = 0;
  page.on("dialog", async (d) => {
    dialogs++;
    if (d.type() === "prompt") {
      await d.accept(opt.token);
      tokenGiven = true;
    } else {
      await d.dismiss();
    }
  });

  // (a) the session appears in the list.
  const created = await adminCall("POST", "/api/sessions", { id: session });
  check(created.status === 201, "create session: " + created.status + " " + created.text);
  await page.goto(adminURL + "/ui/");
  const sessionRow = page.locator(`#sessions tr[data-session="${session}"]`);
  await sessionRow.waitFor();
  if (opt.token) check(dialogs === 1, `token prompt: got ${dialogs} dialogs, want 1`);
  check((await sessionRow.locator("td").nth(1).textContent()) === "active", "session state is active");
  log("session listed");

  // (b) select it; a request through the proxy shows up live within a second.
  await sessionRow.click();
  await page.locator('#grid[data-live="1"]').waitFor();
  const first = await viaProxy("/hello?lang=en");
  check(first.status === 200, "first request: " + first.status);
  const t0 = Date.now();
  const helloRow = page.locator(".grid-row", { hasText: "/hello?lang=en" }).first();
  await helloRow.waitFor({ timeout: 1000 });
  log(`request in the table after ${Date.now() - t0} ms`);
  check((await helloRow.locator(".c-method").textContent()) === "GET", "method column");
  check((await helloRow.locator(".c-status").textContent()) === "200", "status column");
  check(Number(await sessionRow.locator("td").nth(2).textContent()) >= 1, "the session's request count");

  // (d) the detail pane shows the body, JSON pretty-printed.
  await helloRow.click();
  const respBody = page.locator("#response-body pre");
  await respBody.waitFor();
  const shown = await respBody.textContent();
  const upstreamJSON = JSON.parse(first.text);
  check(shown === JSON.stringify(upstreamJSON, null, 2), "detail pane body is the pretty-printed response: " + shown);
  check(await page.locator("#detail").getByText("application/json").first().isVisible(), "response headers shown");
  await shot(page, "ui-detail.png");

  // (e) make a stub; the next request is answered by it, not the upstream.
  await page.locator("#make-stub").click();
  await page.locator("#stubs tbody tr").first().waitFor();
  check((await page.locator("#stubs tbody tr").count()) === 1, "one stub listed");
  const second = await viaProxy("/hello?lang=en");
  check(second.status === 200 && second.text === first.text, "second request answered by the stub: " + second.text);
  await page.locator(".grid-row .c-stub.stubbed").first().waitFor({ timeout: 2000 });
  check((await page.locator("#count").textContent()) === "2 requests", "count shows 2 requests");
  await shot(page, "ui-stubs.png");
  log("stub made and answered");

  // (c) filters.
  await page.locator("#filter-status").selectOption("stub");
  await page.waitForFunction(() => document.getElementById("count").textContent === "1 of 2 requests");
  await page.locator("#filter-status").selectOption("");
  await page.locator("#filter-text").fill("no-such-path");
  await page.waitForFunction(() => document.getElementById("count").textContent === "0 of 2 requests");
  check((await page.locator(".grid-row").count()) === 0, "filtered table is empty");
  await page.locator("#filter-text").fill("");
  await page.locator("#filter-method").selectOption("POST");
  await page.waitForFunction(() => document.getElementById("count").textContent === "0 of 2 requests");
  await page.locator("#filter-method").selectOption("");
  log("filters work");

  // (f) HAR download.
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#har").click()]);
  const har = JSON.parse(readFileSync(await download.path(), "utf8"));
  check(har.log.version === "1.2", "HAR version 1.2");
  check(har.log.entries.length === 2, "HAR has 2 entries, got " + har.log.entries.length);
  const e0 = har.log.entries[0];
  check(e0.request.method === "GET" && e0.request.url.endsWith("/hello?lang=en"), "HAR request: " + e0.request.url);
  check(e0.request.queryString[0]?.name === "lang", "HAR query string");
  check(e0.response.status === 200 && JSON.parse(e0.response.content.text).call === upstreamJSON.call, "HAR response body");
  check(download.suggestedFilename() === session + ".har", "HAR file name " + download.suggestedFilename());
  log("HAR downloaded");

  // Many rows: the table renders only the visible window.
  if (bulk > 0) {
    const t1 = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < bulk) {
        const i = next++;
        const r = await viaProxy("/bulk/" + i);
        check(r.status === 200, "bulk request " + i + ": " + r.status);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const want = `${bulk + 2} requests`;
    await page.waitForFunction((w) => document.getElementById("count").textContent === w, want, { timeout: 15000 });
    log(`${bulk} more requests sent and shown in ${Date.now() - t1} ms`);
    const inDOM = await page.locator(".grid-row").count();
    check(inDOM > 0 && inDOM < 120, `virtualized table: ${inDOM} rows in the DOM for ${bulk + 2} items`);
    await page.locator("#grid").evaluate((g) => {
      g.scrollTop = g.scrollHeight / 2;
    });
    await page.waitForFunction(() => {
      const r = document.querySelector(".grid-row");
      return r && Number(r.dataset.index) > 100;
    });
    await shot(page, "ui-traffic.png");
  } else {
    await shot(page, "ui-traffic.png");
  }

  // Delete the stub, then close the session.
  await page.locator("#stubs tbody tr button").click();
  await page.waitForFunction(() => document.querySelectorAll("#stubs tbody tr").length === 0);
  await sessionRow.locator("button").click();
  await page.waitForFunction(
    (id) => document.querySelector(`#sessions tr[data-session="${id}"] td:nth-child(2)`)?.textContent !== "active",
    session,
  );
  log("stub deleted, session closed");

  check(errors.length === 0, "console errors:\n  " + errors.join("\n  "));
  log("ok");
} catch (e) {
  failed = true;
  console.error(e && e.stack ? e.stack : String(e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
