// Signing in and out, and who sees what: a key on /login, a one-time link
// (which works once), revoking a key ends its session, a stranger neither
// sees nor opens another's workspace.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { agentOf, cli, launch, newKey, newPage, pathOf, signIn } from "./lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("sign in with an API key; a wrong key is refused on the page", async () => {
  const page = await newPage(browser);
  // Signed out, / and the pages send you to /login.
  await page.goto("/");
  assert.equal(pathOf(page), "/login");
  await page.goto("/workspaces");
  assert.equal(pathOf(page), "/login");

  await page.fill("#api_key", "abcdefghij-0123456789abcdefghijklmn");
  await page.click("#sign-in");
  await page.waitForSelector("form#login .error, .error");
  assert.equal(pathOf(page), "/login");
  const cookies = await page.context().cookies();
  assert.ok(!cookies.some((c) => c.name === "coder_session_token" && c.value), "no session cookie after a bad key");

  const { key } = newKey("alice");
  await signIn(page, key);
  assert.equal(pathOf(page), "/workspaces");
  await page.waitForSelector('tr[data-workspace="alice/dev"]');
  const cookie = (await page.context().cookies()).find((c) => c.name === "coder_session_token");
  assert.ok(cookie, "the session cookie is set");
  assert.equal(cookie.httpOnly, true, "HttpOnly");
  assert.equal(cookie.sameSite, "Lax");
  // The cookie is the key itself, as Coder's dashboard does.
  assert.equal(cookie.value, key);
  await page.context().close();
});

test("sign in with a one-time link; the second use fails", async () => {
  const out = cli("login-link", "--user", "alice");
  const link = out.match(/https?:\/\/\S+\/login\/link\?token=\S+/)?.[0];
  assert.ok(link, `login-link printed a /login/link URL: ${out}`);
  const path = new URL(link).pathname + new URL(link).search; // the server's own URL, whatever its access URL

  const first = await newPage(browser);
  const shown = await first.goto(path);
  assert.equal(shown.status(), 200);
  const button = first.locator("form#use-link #use-link-button");
  assert.match(await button.textContent(), /alice/);
  await Promise.all([first.waitForURL("**/workspaces"), button.click()]);
  await first.waitForSelector('tr[data-workspace="alice/dev"]');
  assert.ok((await first.context().cookies()).some((c) => c.name === "coder_session_token"));

  // Again, from another browser: the link is spent.
  const second = await newPage(browser);
  const again = await second.goto(path);
  assert.equal(again.status(), 410);
  assert.equal(
    (await second.locator(".error").first().textContent()).trim(),
    "This sign-in link has been used or has expired.",
  );
  assert.equal(await second.locator("#use-link-button").count(), 0);
  // Nor can the spent token be posted directly.
  const post = await second.request.post("/login/link", { form: { token: new URL(link).searchParams.get("token") }, maxRedirects: 0 });
  assert.notEqual(post.status(), 303, "a spent link does not sign in");
  assert.ok(!(await second.context().cookies()).some((c) => c.name === "coder_session_token" && c.value));

  // The link's session is an API key named "dashboard": revoking it (CLI) ends it.
  const keys = JSON.parse(cli("token", "list", "--user", "alice", "--output", "json"));
  const dash = (Array.isArray(keys) ? keys : keys.keys ?? []).filter((k) => k.name === "dashboard" && k.status === "active");
  assert.equal(dash.length, 1, `one active "dashboard" key for alice: ${JSON.stringify(keys)}`);
  cli("token", "revoke", dash[0].id);
  await first.goto("/workspaces");
  assert.equal(pathOf(first), "/login");
  await first.context().close();
  await second.context().close();
});

test("revoking the session's key on the admin keys page ends that session", async () => {
  const alice = await newPage(browser);
  const { key, id } = newKey("alice", "to-revoke");
  await signIn(alice, key);

  const admin = await newPage(browser);
  await signIn(admin, newKey("admin").key);
  await admin.goto("/admin/keys");
  const row = admin.locator(`table#keys tr[data-key-id="${id}"]`);
  await row.waitFor();
  await Promise.all([admin.waitForLoadState("load"), row.locator("form.revoke-key button, form.revoke-key [type=submit]").first().click()]);
  await admin.waitForURL("**/admin/keys**");

  // alice's next page lands on /login, and her cookie no longer reads the API.
  await alice.goto("/workspaces");
  assert.equal(pathOf(alice), "/login");
  const api = await alice.request.get(`/api/v2/workspaceagents/${agentOf("alice-dev", "main").id}`);
  assert.equal(api.status(), 401);
  // The CLI agrees.
  const keys = JSON.parse(cli("token", "list", "--user", "alice", "--output", "json"));
  const revoked = (Array.isArray(keys) ? keys : keys.keys ?? []).find((k) => k.id === id);
  assert.equal(revoked?.status, "revoked");
  await alice.context().close();
  await admin.context().close();
});

test("a stranger does not see another's workspace, and gets 404 on its pages", async () => {
  const page = await newPage(browser);
  await signIn(page, newKey("mallory").key);
  await page.waitForSelector('tr[data-workspace="mallory/secret"]');
  assert.equal(await page.locator('tr[data-workspace="alice/dev"]').count(), 0);
  assert.doesNotMatch(await page.content(), /alice\/dev/);

  const ws = await page.goto("/workspaces/alice/dev");
  assert.equal(ws.status(), 404);
  const agentId = agentOf("alice-dev", "main").id;
  const agent = await page.goto(`/agents/${agentId}`);
  assert.equal(agent.status(), 404);
  assert.doesNotMatch(await page.content(), new RegExp(agentId));
  const api = await page.request.get(`/api/v2/workspaceagents/${agentId}`);
  assert.equal(api.status(), 404);
  // Members have no admin pages.
  const users = await page.goto("/admin/users");
  assert.equal(users.status(), 403);

  // Her own is there; an admin sees both.
  const own = await page.goto("/workspaces/mallory/secret");
  assert.equal(own.status(), 200);
  const admin = await newPage(browser);
  await signIn(admin, newKey("admin").key);
  await admin.waitForSelector('tr[data-workspace="alice/dev"]');
  await admin.waitForSelector('tr[data-workspace="mallory/secret"]');
  await page.context().close();
  await admin.context().close();
});

test("sign out clears the session", async () => {
  const page = await newPage(browser);
  await signIn(page, newKey("alice").key);
  await Promise.all([page.waitForURL("**/login"), page.locator("form#logout [type=submit], form#logout button").first().click()]);
  await page.goto("/workspaces");
  assert.equal(pathOf(page), "/login");
  await page.context().close();
});
