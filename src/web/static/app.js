// appliance dashboard: the live parts, in plain JavaScript (no framework, no
// build). Everything is driven by ids and data-* attributes in the pages.
"use strict";
(function () {
  // "2026-08-12T10:15:00.123Z" -> "2026-08-12 10:15:00Z", as the server writes times.
  function shortTime(s) {
    return s ? s.slice(0, 19).replace("T", " ") + "Z" : "never";
  }
  function setText(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== text) el.textContent = text;
    return el;
  }

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-copy]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      var old = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = old; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: copy by hand */ }
    }
  });
  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // [data-poll=MS]: refetch this page every MS ms and swap the element in
  // place (the workspace list, a workspace's agents). Signed out: reload,
  // which lands on the sign-in page.
  Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), function (el) {
    var every = parseInt(el.getAttribute("data-poll"), 10) || 5000;
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (resp) {
          if (resp.redirected || resp.status === 401) { location.reload(); return null; }
          return resp.ok ? resp.text() : null;
        })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(el.id);
          var current = document.getElementById(el.id);
          if (fresh && current && fresh.innerHTML !== current.innerHTML) current.innerHTML = fresh.innerHTML;
        })
        .catch(function () { /* try again next time */ })
        .then(function () { busy = false; });
    }, every);
  });

  // The agent page: status from the API every 2 s.
  var agent = document.getElementById("agent");
  if (agent && agent.getAttribute("data-agent-id")) {
    var agentUrl = "/api/v2/workspaceagents/" + agent.getAttribute("data-agent-id");
    var polling = false;
    var poll = function () {
      if (polling || document.hidden) return;
      polling = true;
      fetch(agentUrl, { credentials: "same-origin" })
        .then(function (resp) {
          if (resp.status === 401) { location.reload(); return null; }
          return resp.ok ? resp.json() : null;
        })
        .then(function (a) {
          if (!a) return;
          var status = setText("agent-status", a.status);
          if (status) status.className = "status status-" + a.status;
          setText("lifecycle", a.lifecycle_state);
          var health = setText("health", a.health.healthy ? "healthy" : (a.health.reason || "unhealthy"));
          if (health) health.className = a.health.healthy ? "healthy" : "unhealthy";
          setText("version", a.version);
          setText("api-version", a.api_version);
          setText("last-seen", shortTime(a.last_connected_at));
          (a.apps || []).forEach(function (app) {
            var cell = document.querySelector('tr[data-app-id="' + app.id + '"] .app-health');
            if (cell && cell.textContent !== app.health) {
              cell.textContent = app.health;
              cell.className = "app-health health-" + app.health;
            }
          });
        })
        .catch(function () { /* try again next time */ })
        .then(function () { polling = false; });
    };
    setInterval(poll, 2000);
  }

  // Live logs: the follow WebSocket, the source filter.
  var logs = document.getElementById("logs");
  var filter = document.getElementById("log-source");
  if (logs && logs.getAttribute("data-agent-id")) {
    var id = logs.getAttribute("data-agent-id");
    var after = 0;
    var delay = 1000;
    var MAX_LINES = 20000;
    var state = document.getElementById("logs-state");
    var show = function (line) {
      line.hidden = !!(filter && filter.value && line.getAttribute("data-source") !== filter.value);
    };
    if (filter) {
      filter.addEventListener("change", function () {
        Array.prototype.forEach.call(logs.children, show);
        logs.scrollTop = logs.scrollHeight;
      });
    }
    var connect = function () {
      var scheme = location.protocol === "https:" ? "wss:" : "ws:";
      var ws = new WebSocket(scheme + "//" + location.host + "/api/v2/workspaceagents/" + id +
        "/logs?follow&after=" + after);
      ws.onopen = function () { delay = 1000; if (state) state.textContent = "following"; };
      ws.onmessage = function (ev) {
        var batch;
        try { batch = JSON.parse(ev.data); } catch (e) { return; }
        if (!batch || !batch.length) return;
        var atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 24;
        var frag = document.createDocumentFragment();
        batch.forEach(function (log) {
          if (log.id <= after) return;
          after = log.id;
          var line = document.createElement("span");
          line.className = "log-line lvl-" + log.level;
          line.setAttribute("data-source", log.source_id);
          line.textContent = log.output + "\n";
          show(line);
          frag.appendChild(line);
        });
        logs.appendChild(frag);
        while (logs.childElementCount > MAX_LINES) logs.removeChild(logs.firstElementChild);
        if (atBottom) logs.scrollTop = logs.scrollHeight;
      };
      ws.onclose = function () {
        if (state) state.textContent = "reconnecting…";
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      };
    };
    connect();
  }
})();
