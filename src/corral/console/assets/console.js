// The web console's page: xterm.js on a WebSocket to the shell (corral.console).
// Keystrokes go as binary frames; a resize as a text frame {"resize": [columns, rows]};
// the shell's output comes back as binary frames. No other origin is ever contacted.
"use strict";
(function () {
  const element = document.getElementById("terminal");
  const state = document.getElementById("state");
  const term = new Terminal({
    cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, monospace",
    fontSize: 14,
    scrollback: 5000,
    theme: { background: "#1e1e1e" },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(element);
  fit.fit();
  window.corralTerminal = term;  // for tests and the curious: the page's terminal

  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + element.dataset.socket);
  socket.binaryType = "arraybuffer";
  const encoder = new TextEncoder();

  function show(text, kind) {
    state.textContent = text;
    state.className = "state " + kind;
  }
  function sendSize() {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ resize: [term.cols, term.rows] }));
    }
  }
  socket.onopen = function () {
    show("connected", "open");
    sendSize();
    term.focus();
  };
  socket.onmessage = function (event) {
    term.write(new Uint8Array(event.data));
  };
  socket.onclose = function (event) {
    const why = event.reason || "connection lost";
    show("closed: " + why, "closed");
    term.write("\r\n\x1b[90m[" + why + "]\x1b[0m\r\n");
  };
  term.onData(function (data) {
    if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  term.onBinary(function (data) {
    if (socket.readyState !== WebSocket.OPEN) return;
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 255;
    socket.send(bytes);
  });
  term.onResize(sendSize);
  window.addEventListener("resize", function () { fit.fit(); });
})();
