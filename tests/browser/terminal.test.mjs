// The web terminal on the agent page. With xterm.js bundled: a command typed
// into it runs in Coder's real agent's shell and its output shows; a resize
// reaches the PTY; a reload reattaches to the same shell; `exit` ends the
// session and Enter starts a new one. Without: the page says why, and the
// terminal's assets are not served.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  agentOf, EXPECT_TERMINAL, launch, newKey, newPage, nonce, screenshot, signIn, startAgent, TERMINAL_ASSETS,
} from "./lib.mjs";

const MISSING = "This build of appliance does not bundle xterm.js, so there is no terminal here. Build with packaging/xterm.sh first.";
const term = agentOf("alice-dev", "term");
let browser;
let page;
let agent;

before(async () => {
  browser = await launch();
  page = await newPage(browser);
  await signIn(page, newKey("alice").key);
});
after(async () => {
  await agent?.stop();
  await browser?.close();
});

/** The terminal's rows as text, trailing blanks cut. */
async function screenLines() {
  return page.$$eval("#terminal .xterm-rows > div", (rows) => rows.map((r) => r.textContent.replace(/\s+$/, "")));
}
async function waitForLine(pred, what, timeout = 15_000) {
  const until = Date.now() + timeout;
  let lines = [];
  while (Date.now() < until) {
    lines = await screenLines();
    const hit = lines.find(pred);
    if (hit !== undefined) return hit;
    await page.waitForTimeout(100);
  }
  assert.fail(`no line ${what} on the terminal within ${timeout} ms; it shows:\n${lines.filter(Boolean).join("\n")}`);
}
async function typeLine(text) {
  await page.keyboard.type(text, { delay: 5 });
  await page.keyboard.press("Enter");
}
async function state() {
  return page.getAttribute("section#terminal", "data-state");
}
async function waitState(want, timeout = 30_000) {
  await page.waitForFunction(
    (w) => document.querySelector("section#terminal")?.getAttribute("data-state") === w,
    want,
    { timeout, polling: 100 },
  );
}

if (EXPECT_TERMINAL === "missing") {
  test("without xterm.js bundled the agent page says why, and no terminal asset is served", async () => {
    await page.goto(`/agents/${term.id}`);
    const missing = page.locator("section#terminal p.terminal-missing");
    assert.equal((await missing.textContent()).trim(), MISSING);
    assert.equal(await page.locator("#terminal .xterm").count(), 0);
    const html = await page.content();
    for (const asset of TERMINAL_ASSETS) {
      assert.ok(!html.includes(asset), `the page does not load ${asset}`);
      assert.equal((await page.request.get(asset)).status(), 404, asset);
    }
    await screenshot(page, "agent-terminal-missing");
  });
} else {
  test("the terminal echoes a command run in the agent's shell", async (t) => {
    agent = await startAgent(term.token, "term");
    await page.goto(`/agents/${term.id}`);
    assert.equal(await page.locator("section#terminal p.terminal-missing").count(), 0);
    await page.waitForFunction(() => document.querySelector("#agent-status")?.textContent.trim() === "connected", null, { timeout: 45_000 });
    const started = Date.now();
    await waitState("connected", 45_000);
    t.diagnostic(`terminal connected ${Date.now() - started} ms after the agent did`);
    await page.click("#terminal .xterm");
    const word = nonce();
    // The output differs from what was typed: the shell ran it.
    await typeLine(`echo hello-$((40+2))-${word}`);
    await waitForLine((l) => l.trim() === `hello-42-${word}`, `hello-42-${word}`);
    await screenshot(page, "agent-terminal");
  });

  test("a resize reaches the PTY, and `stty size` says the terminal's size", async () => {
    const rows = await page.$$eval("#terminal .xterm-rows > div", (r) => r.length);
    const sizeNow = async (tag) => {
      await typeLine(`echo size-${tag} $(stty size)`);
      const line = await waitForLine((l) => new RegExp(`^size-${tag} \\d+ \\d+$`).test(l.trim()), `size-${tag} R C`);
      const [, r, c] = line.trim().split(" ").map(Number);
      return { r, c };
    };
    const before = await sizeNow("a");
    assert.equal(before.r, rows, "rows as the terminal shows them");
    await page.setViewportSize({ width: 700, height: 900 });
    await page.waitForFunction((c) => {
      // The fit follows the window: fewer columns fit now.
      const row = document.querySelector("#terminal .xterm-rows > div");
      return row && row.getBoundingClientRect().width < 700;
    }, before.c);
    await page.waitForTimeout(300);
    const after = await sizeNow("b");
    assert.ok(after.c < before.c, `columns went from ${before.c} to ${after.c}`);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test("a reload reattaches to the same shell (same reconnect id): its output is replayed", async () => {
    const word = nonce();
    await typeLine(`export BROWSER_MARK=${word}; echo marked-${word}`);
    await waitForLine((l) => l.trim() === `marked-${word}`, `marked-${word}`);
    const id = await page.evaluate((k) => sessionStorage.getItem(k), `appliance.terminal.reconnect.${term.id}`);
    assert.match(id ?? "", /^[0-9a-f-]{36}$/);
    await page.reload();
    await waitState("connected");
    await waitForLine((l) => l.trim() === `marked-${word}`, "the replayed output");
    assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), `appliance.terminal.reconnect.${term.id}`), id);
    // The same shell: its variable is still set.
    await page.click("#terminal .xterm");
    await typeLine("echo still-$BROWSER_MARK");
    await waitForLine((l) => l.trim() === `still-${word}`, `still-${word}`);
  });

  test("exit ends the session; Enter starts a new shell", async () => {
    await typeLine("exit");
    await waitState("ended");
    assert.match(await page.textContent("#terminal .terminal-status"), /ended/);
    await page.keyboard.press("Enter");
    await waitState("connected");
    const word = nonce();
    await typeLine(`echo fresh-$BROWSER_MARK-${word}`);
    // A new shell: the variable of the old one is gone.
    await waitForLine((l) => l.trim() === `fresh--${word}`, `fresh--${word}`);
    assert.equal(await state(), "connected");
  });
}
