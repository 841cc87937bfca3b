// The main pages as a person sees them: a screenshot of each (SCREENSHOT_DIR),
// the headers every page carries, nothing loaded from elsewhere, no script or
// style refused by the page's own policy, and each page under 100 KB without
// the terminal's files.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { agentOf, launch, newKey, newPage, screenshot, signIn, TERMINAL_ASSETS, URL_BASE } from "./lib.mjs";

const MAX_PAGE_BYTES = 100 * 1024;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/**
 * Opens `path` and returns what it cost: bytes of every response the page
 * loaded (the terminal's files apart), the requests that left the server,
 * the console's CSP complaints about our own files.
 */
async function visit(page, path) {
  const responses = [];
  const foreign = [];
  const refused = [];
  const onResponse = (r) => responses.push(r);
  const onRequest = (r) => {
    const u = r.url();
    if (!u.startsWith(URL_BASE) && !u.startsWith("data:") && !u.startsWith("ws://127.0.0.1")) foreign.push(u);
  };
  const onConsole = (m) => {
    // xterm's renderer writes <style> elements the policy refuses (terminal.js
    // adopts the same rules another way); anything else refused is a finding.
    if (/Content Security Policy/.test(m.text()) && !/inline style/.test(m.text())) refused.push(m.text());
  };
  // Every page's full weight, as a first visit pays it: no browser cache.
  if (!page.__noCache) {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    page.__noCache = true;
  }
  page.on("response", onResponse);
  page.on("request", onRequest);
  page.on("console", onConsole);
  const main = await page.goto(path);
  await page.waitForLoadState("networkidle").catch(() => {});
  page.off("response", onResponse);
  page.off("request", onRequest);
  page.off("console", onConsole);
  let bytes = 0;
  let terminalBytes = 0;
  for (const r of responses) {
    if (r.status() < 200 || r.status() >= 300) continue;
    const len = (await r.body().catch(() => Buffer.alloc(0))).length;
    if (TERMINAL_ASSETS.includes(new URL(r.url()).pathname)) terminalBytes += len;
    else bytes += len;
  }
  return { main, bytes, terminalBytes, foreign, refused };
}

function checkHeaders(res, path) {
  const h = res.headers();
  assert.equal(h["content-type"], "text/html; charset=utf-8", `${path}: content-type`);
  assert.equal(h["cache-control"], "no-store", `${path}: cache-control`);
  assert.equal(h["x-frame-options"], "DENY", `${path}: x-frame-options`);
  const csp = h["content-security-policy"] ?? "";
  for (const part of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(part), `${path}: CSP has ${part}: ${csp}`);
  }
}

test("the main pages: screenshots, headers, nothing from elsewhere, under 100 KB each", async (t) => {
  const main = agentOf("alice-dev", "main");
  const anon = await newPage(browser);
  const admin = await newPage(browser);
  const login = await visit(anon, "/login");
  checkHeaders(login.main, "/login");
  await screenshot(anon, "login");
  await signIn(admin, newKey("admin").key);

  const pages = [
    [anon, "/login", "login", login],
    [admin, "/workspaces", "workspaces"],
    [admin, "/workspaces/alice/dev", "workspace"],
    [admin, `/agents/${main.id}`, "agent"],
    [admin, "/admin/keys", "admin-keys"],
    [admin, "/admin/users", "admin-users"],
    [admin, "/gitsshkey", "gitsshkey"],
  ];
  const rows = [];
  for (const [page, path, name, seen] of pages) {
    const v = seen ?? (await visit(page, path));
    assert.equal(v.main.status(), 200, `${path}: status`);
    checkHeaders(v.main, path);
    assert.deepEqual(v.foreign, [], `${path}: requests that left the server`);
    assert.deepEqual(v.refused, [], `${path}: refused by the page's policy`);
    assert.ok(v.bytes < MAX_PAGE_BYTES, `${path}: ${v.bytes} bytes without the terminal's files`);
    if (!seen) await screenshot(page, name);
    rows.push(`${path}: ${v.bytes} B${v.terminalBytes ? ` (+ ${v.terminalBytes} B terminal)` : ""}`);
  }
  t.diagnostic(`page weight: ${rows.join("; ")}`);
  await anon.context().close();
  await admin.context().close();
});
