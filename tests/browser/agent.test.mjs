// The agent page is live: Coder's real agent, started while the page is open,
// turns it from connecting to connected without a reload, and a log line the
// agent sends shows in the live view within a second.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { agentOf, launch, newKey, newPage, nonce, screenshot, sendLog, signIn, startAgent } from "./lib.mjs";

const main = agentOf("alice-dev", "main");
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

/** Marks the document; stillTheSameDocument() is false once the page was reloaded or left. */
async function mark() {
  await page.evaluate(() => { window.__notReloaded = true; });
}
async function stillTheSameDocument() {
  return page.evaluate(() => window.__notReloaded === true);
}

test("the agent page flips from connecting to connected without a reload", async (t) => {
  // The workspace page links to the agent.
  await page.goto("/workspaces/alice/dev");
  await page.click(`a.agent-link[data-agent-id="${main.id}"]`);
  await page.waitForURL(`**/agents/${main.id}`);
  assert.equal((await page.textContent("#agent-status")).trim(), "connecting");
  await mark();

  const started = Date.now();
  agent = await startAgent(main.token, "main");
  await page.waitForFunction(
    () => document.querySelector("#agent-status")?.textContent.trim() === "connected",
    null,
    { timeout: 45_000, polling: 100 },
  );
  t.diagnostic(`connected on the page ${Date.now() - started} ms after the agent started`);
  assert.ok(await stillTheSameDocument(), "the page was not reloaded");
  // What the agent reported reaches the page too (polled, no reload): its version.
  await page.waitForFunction(() => /\d+\.\d+/.test(document.querySelector("#version")?.textContent ?? ""), null, { timeout: 15_000 });
  assert.ok(await stillTheSameDocument());
});

test("a log line sent by the agent appears in the live view within a second", async (t) => {
  assert.ok(agent, "the agent of the previous test runs");
  // The startup script's output arrives through the same view first.
  await page.waitForFunction(
    () => (document.querySelector("pre#logs")?.textContent ?? "").includes("hello-from-the-startup-script"),
    null,
    { timeout: 30_000, polling: 100 },
  );
  await mark();
  const line = `browser-test-line-${nonce()}`;
  assert.doesNotMatch(await page.textContent("pre#logs"), new RegExp(line));
  const appeared = page.waitForFunction(
    (l) => (document.querySelector("pre#logs")?.textContent ?? "").includes(l),
    line,
    { timeout: 1_000, polling: 20 },
  );
  const sent = Date.now();
  await sendLog(main.token, line);
  await appeared; // rejects after 1 s
  const ms = Date.now() - sent;
  t.diagnostic(`shown ${ms} ms after the PATCH began`);
  assert.ok(ms < 1_000, `shown ${ms} ms after the PATCH began`);
  assert.ok(await stillTheSameDocument(), "the page was not reloaded");
  await screenshot(page, "agent-with-logs");
});

test("the agent page shows disconnected once the agent stops", async () => {
  assert.ok(agent);
  await mark();
  await agent.stop();
  agent = null;
  await page.waitForFunction(
    () => document.querySelector("#agent-status")?.textContent.trim() === "disconnected",
    null,
    { timeout: 30_000, polling: 200 },
  );
  assert.ok(await stillTheSameDocument());
});
