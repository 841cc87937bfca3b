// appliance's web terminal: xterm.js on the agent's /pty WebSocket, spoken
// as Coder's dashboard terminal speaks it. The agent page's
// section#terminal[data-agent-id] holds it; /static/xterm.js (window.Terminal)
// loads first. Served as /static/terminal.js right after xterm.js's fit addon
// (window.FitAddon), which src/web/terminal/mod.rs puts in front of it.
//
// - The socket: /api/v2/workspaceagents/{id}/pty?reconnect=ID&width=COLS&height=ROWS,
//   authenticated by the session cookie. ID is a UUID kept in sessionStorage
//   per agent, so a reload or a dropped connection reattaches to the same
//   shell (the agent replays its last 64 KiB).
// - Output: binary messages, written to xterm as bytes.
// - Input: every keystroke as a text message {"data": "..."}; a resize as
//   {"height": ROWS, "width": COLS} whenever the fit changes.
// - A drop reconnects with the same ID after 1, 2, 4, 8, then every 15
//   seconds (the agent may not be connected yet). A clean close (1000: the
//   shell exited) ends the session; Enter starts a new one under a new ID.
// - section#terminal[data-state] is connecting, connected, disconnected or
//   ended; p.terminal-status says the same in words.
(function () {
  "use strict";

  var section = document.getElementById("terminal");
  if (!section) return;
  var agentId = section.getAttribute("data-agent-id") || "";

  function child(className, tag) {
    var el = section.querySelector("." + className);
    if (!el) {
      el = document.createElement(tag);
      el.className = className;
      section.appendChild(el);
    }
    return el;
  }
  var statusLine = child("terminal-status", "p");
  statusLine.setAttribute("role", "status");
  statusLine.setAttribute("aria-live", "polite");
  var screen = child("terminal-screen", "div");

  function setState(state, text) {
    section.setAttribute("data-state", state);
    statusLine.textContent = text;
  }

  if (typeof window.Terminal !== "function") {
    setState("ended", "The terminal could not start: xterm.js did not load.");
    return;
  }

  // ---- the reconnect ID, one per agent and browser tab ----
  var storageKey = "appliance.terminal.reconnect." + agentId;
  var memory = null; // when sessionStorage is refused
  function uuid4() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b); // randomUUID needs a secure context; this does not
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) {
      return (x + 0x100).toString(16).slice(1);
    }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" +
      h.slice(16, 20) + "-" + h.slice(20);
  }
  function reconnectId(fresh) {
    var id = null;
    try {
      id = fresh ? null : window.sessionStorage.getItem(storageKey);
      if (!id) {
        id = uuid4();
        window.sessionStorage.setItem(storageKey, id);
      }
      return id;
    } catch (e) {
      if (fresh || !memory) memory = uuid4();
      return memory;
    }
  }

  // ---- xterm ----
  if (!screen.clientHeight) screen.style.height = "28em";
  var term = new window.Terminal({
    cursorBlink: true,
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    scrollback: 5000,
  });
  var fitAddon = typeof window.FitAddon === "object" && window.FitAddon.FitAddon
    ? new window.FitAddon.FitAddon()
    : null;
  if (fitAddon) term.loadAddon(fitAddon);
  term.open(screen);
  adoptRendererStyles(screen);

  // xterm's DOM renderer writes its layout and colours into <style> elements,
  // which the page's Content-Security-Policy (style-src 'self') refuses. The
  // same rules go in as constructed style sheets, which the policy does not
  // cover, and follow the elements as xterm rewrites them (on a resize, a
  // font or theme change).
  function adoptRendererStyles(root) {
    if (!("adoptedStyleSheets" in document) || typeof CSSStyleSheet !== "function") return;
    var sheets = [];
    function sync() {
      var live = root.querySelectorAll("style");
      var keep = [];
      Array.prototype.forEach.call(live, function (el) {
        var entry = null;
        for (var i = 0; i < sheets.length; i++) if (sheets[i].el === el) entry = sheets[i];
        if (!entry) {
          entry = { el: el, sheet: new CSSStyleSheet(), text: null };
          observer.observe(el, { childList: true, characterData: true, subtree: true });
        }
        if (entry.text !== el.textContent) {
          entry.text = el.textContent;
          try { entry.sheet.replaceSync(entry.text); } catch (e) { /* keep the last good rules */ }
        }
        keep.push(entry);
      });
      var mine = sheets.map(function (s) { return s.sheet; });
      var others = document.adoptedStyleSheets.filter(function (s) { return mine.indexOf(s) < 0; });
      sheets = keep;
      document.adoptedStyleSheets = others.concat(keep.map(function (s) { return s.sheet; }));
    }
    var observer = new MutationObserver(sync);
    // New or removed <style> elements: xterm keeps them directly in .xterm-screen.
    var screenEl = root.querySelector(".xterm-screen") || root;
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var nodes = Array.prototype.slice.call(records[i].addedNodes)
          .concat(Array.prototype.slice.call(records[i].removedNodes));
        for (var j = 0; j < nodes.length; j++) {
          if (nodes[j].nodeName === "STYLE") { sync(); return; }
        }
      }
    }).observe(screenEl, { childList: true });
    sync();
  }

  // ---- the socket ----
  var ws = null;
  var attempt = 0;
  var retryTimer = null;
  var ended = false;
  var everConnected = false;

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }
  function fit() {
    if (!fitAddon) return;
    try { fitAddon.fit(); } catch (e) { /* not laid out yet */ }
  }

  function connect(fresh) {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    ended = false;
    fit();
    var id = reconnectId(fresh);
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + window.location.host + "/api/v2/workspaceagents/" +
      encodeURIComponent(agentId) + "/pty?reconnect=" + id +
      "&width=" + term.cols + "&height=" + term.rows;
    setState("connecting", attempt ? "Reconnecting\u2026" : "Connecting\u2026");
    var socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    var opened = false;
    ws = socket;
    socket.onopen = function () {
      opened = true;
      attempt = 0;
      // Reattaching replays the shell's recent output: start from a clean screen.
      if (everConnected) term.reset();
      everConnected = true;
      setState("connected", "Connected.");
      send({ height: term.rows, width: term.cols });
    };
    socket.onmessage = function (ev) {
      term.write(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
    };
    socket.onclose = function (ev) {
      if (ws !== socket) return;
      ws = null;
      if (opened && ev.code === 1000) {
        ended = true;
        setState("ended", "The terminal session ended. Press Enter to start a new one.");
        return;
      }
      var delay = attempt < 4 ? Math.pow(2, attempt) : 15;
      attempt++;
      var why = ev.reason ? ": " + ev.reason : opened ? "" : " (is the agent connected?)";
      setState("disconnected", "Disconnected" + why + ". Reconnecting in " + delay + " s\u2026");
      retryTimer = setTimeout(function () { connect(false); }, delay * 1000);
    };
  }

  term.onData(function (data) {
    if (ended) {
      if (data === "\r") connect(true);
      return;
    }
    send({ data: data });
  });
  term.onResize(function (size) {
    send({ height: size.rows, width: size.cols });
  });

  var pending = false;
  function refit() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; fit(); });
  }
  window.addEventListener("resize", refit);
  if (typeof ResizeObserver === "function") new ResizeObserver(refit).observe(screen);
  // Back from a sleeping laptop or a lost network: try now, not at the next tick.
  window.addEventListener("online", function () { if (!ws && !ended) connect(false); });

  connect(false);
})();
