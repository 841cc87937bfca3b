// Shared by the browser tests: what run.sh set up (the server, its database,
// the applied workspaces, Coder's agent built for the tests), the appliance
// CLI, Chromium, signing in, screenshots, the agent process.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is unset: run the tests with tests/browser/run.sh`);
  return v;
}

export const URL_BASE = need("BROWSER_URL");
export const EXPECT_TERMINAL = need("BROWSER_EXPECT_TERMINAL"); // bundled | missing
const BIN = need("BROWSER_APPLIANCE");
const DB = need("BROWSER_DB");
const WORK = need("BROWSER_WORK");
const AGENT = need("BROWSER_AGENT");
const CHROMIUM = need("BROWSER_CHROMIUM");
const SCREENSHOTS = need("SCREENSHOT_DIR");

/** The appliance CLI on the test database; its stdout, trimmed. */
export function cli(...args) {
  // appliance warns about APPLIANCE_* names it does not know: none of ours reach it.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("APPLIANCE_")));
  return execFileSync(BIN, [...args, "--db", DB], { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** A new API key for `user` (`appliance token create`): { key, id }. */
export function newKey(user, name = "browser-test") {
  const key = cli("token", "create", "--user", user, "--name", name);
  if (!/^[^-\s]+-[^-\s]+$/.test(key)) throw new Error(`unexpected key from token create: ${key}`);
  return { key, id: key.split("-")[0] };
}

/** `workspace apply --output json` of a workspace run.sh applied ("alice-dev", "mallory-secret"). */
export function applied(name) {
  return JSON.parse(readFileSync(join(WORK, `${name}.json`), "utf8"));
}

/** { id, token } of agent `agent` in applied workspace `ws`. */
export function agentOf(ws, agent) {
  const a = applied(ws).agents.find((x) => x.name === agent);
  if (!a) throw new Error(`no agent ${agent} in ${ws}`);
  return a;
}

/** Debian's Chromium, headless; as root it needs --no-sandbox. */
export async function launch() {
  const args = process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [];
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/** A fresh browser context (its own cookies) with a page, base URL set. */
export async function newPage(browser) {
  const context = await browser.newContext({ baseURL: URL_BASE, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  return page;
}

/** Signs in on /login with `key`; fails unless it lands on /workspaces. */
export async function signIn(page, key) {
  await page.goto("/login");
  await page.fill("#api_key", key);
  await Promise.all([page.waitForURL("**/workspaces"), page.click("#sign-in")]);
}

/** The page's path (no query). */
export function pathOf(page) {
  return new URL(page.url()).pathname;
}

/** A full-page PNG in SCREENSHOT_DIR. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * Coder's real agent (browseragent) for an agent token; resolves once it
 * runs (not yet connected). stop() ends it (SIGTERM) and waits.
 */
export async function startAgent(token, label) {
  const dir = join(WORK, `agent-${label}`);
  mkdirSync(dir, { recursive: true });
  const child = spawn(AGENT, ["--url", URL_BASE, "--token", token, "--dir", dir], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => { if (String(d).includes("started")) resolve(); });
    exited.then(({ code }) => reject(new Error(`browseragent exited (${code}): ${stderr.slice(-2000)}`)));
  });
  return {
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** PATCH /api/v2/workspaceagents/me/logs as the agent: the agent API's own write. */
export async function sendLog(agentToken, output) {
  const res = await fetch(`${URL_BASE}/api/v2/workspaceagents/me/logs`, {
    method: "PATCH",
    headers: { "Coder-Session-Token": agentToken, "Content-Type": "application/json" },
    body: JSON.stringify({ logs: [{ created_at: new Date().toISOString(), output, level: "info" }] }),
  });
  if (res.status !== 200) throw new Error(`PATCH /me/logs: ${res.status} ${await res.text()}`);
}

/** A short random word, for text a test then looks for. */
export function nonce() {
  return Math.random().toString(36).slice(2, 10);
}

/** The assets only the terminal loads (left out of the page weight). */
export const TERMINAL_ASSETS = ["/static/xterm.js", "/static/xterm.css", "/static/terminal.js"];
