// A Node.js application for Corral's built-in `nodejs.http` engine, using only Node's standard
// library: an HTTP server on the port Corral gives it (PORT / HOST), or on the Unix socket it
// gives it (SOCKET, when the engine's transport is "unix"), and a WebSocket echo endpoint
// (RFC 6455, written out here: no npm package needed).
//
// Corral passes the whole URL path; APPL_VIRTUAL_PATH says where the application is mounted
// ("/" or "/node"), so the routes below are relative to it.
//
//   GET  /            a greeting with the process id
//   GET  /headers     the request's headers as JSON (see X-Forwarded-For/-Proto/-Host)
//   POST /upload      the body's size and SHA-256, as JSON (streamed, never held whole)
//   GET  /ws          WebSocket: every text or binary message comes back as sent
//   GET  /chat.html   a page whose script sends a message over /ws and shows the echo
//   GET  /hold        kept pending until /release (the page holds it while it waits for the echo)
//   GET  /release     answers every pending /hold (the page asks once it shows the echo)

"use strict";

const http = require("http");
const crypto = require("crypto");

const SOCKET = process.env.SOCKET || "";
const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || "127.0.0.1";
const MOUNT = (process.env.APPL_VIRTUAL_PATH || "/").replace(/\/+$/, "");
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// A page whose script talks to the WebSocket echo (relative URL: works under any mount).
const CHAT_PAGE = `<!doctype html>
<title>WebSocket echo</title>
<h1>WebSocket echo</h1>
<p>Sent: <span id="sent"></span></p>
<p>Echoed: <span id="echo">(waiting)</span></p>
<script>
  // Held open by the server until the page has shown the echo (it then asks for /release):
  // keeps a headless browser's --virtual-time-budget from ending the page before that.
  fetch("hold").catch(() => {});
  const done = () => fetch("release").catch(() => {});
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  const message = "hello from the browser";
  socket.onopen = () => {
    document.getElementById("sent").textContent = message;
    socket.send(message);
  };
  socket.onmessage = (event) => {
    document.getElementById("echo").textContent = event.data;
    socket.close();
    done();
  };
  socket.onerror = () => {
    document.getElementById("echo").textContent = "error";
    done();
  };
</script>
`;

// Requests to /hold, answered when the page asks for /release (or after 10 s).
let holds = [];

function release(res) {
  if (!res.writableEnded) send(res, 200, "text/plain", "released\n");
}

function releaseHolds() {
  const waiting = holds;
  holds = [];
  for (const { res, timer } of waiting) {
    clearTimeout(timer);
    release(res);
  }
}

function route(url) {
  const path = url.split("?")[0];
  if (MOUNT && path.startsWith(MOUNT)) {
    return path.slice(MOUNT.length) || "/";
  }
  return path;
}

function send(res, status, type, body) {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const path = route(req.url);
  if (req.method === "GET" && path === "/") {
    send(res, 200, "text/plain; charset=utf-8", `Hello from Node.js ${process.version}, pid ${process.pid}\n`);
  } else if (req.method === "GET" && path === "/chat.html") {
    send(res, 200, "text/html; charset=utf-8", CHAT_PAGE);
  } else if (req.method === "GET" && path === "/hold") {
    const timer = setTimeout(() => release(res), 10000);
    holds.push({ res, timer });
  } else if (req.method === "GET" && path === "/release") {
    releaseHolds();
    send(res, 200, "text/plain", "released\n");
  } else if (req.method === "GET" && path === "/pid") {
    send(res, 200, "text/plain", String(process.pid));
  } else if (req.method === "GET" && path === "/headers") {
    send(res, 200, "application/json", JSON.stringify(req.headers));
  } else if (req.method === "POST" && path === "/upload") {
    const hash = crypto.createHash("sha256");
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      hash.update(chunk);
    });
    req.on("end", () => {
      send(res, 200, "application/json", JSON.stringify({ bytes: size, sha256: hash.digest("hex") }));
    });
  } else {
    send(res, 404, "text/plain", "not found\n");
  }
});

// --- WebSocket (RFC 6455) ------------------------------------------------------------------

function frame(opcode, payload) {
  const length = payload.length;
  let head;
  if (length < 126) {
    head = Buffer.from([0x80 | opcode, length]);
  } else if (length < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(length, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([head, payload]);
}

function echoSocket(socket, initial) {
  let buffer = initial && initial.length ? Buffer.from(initial) : Buffer.alloc(0);
  let message = [];
  let messageOpcode = 0;

  function parse() {
    while (buffer.length >= 2) {
      const fin = (buffer[0] & 0x80) !== 0;
      const opcode = buffer[0] & 0x0f;
      const masked = (buffer[1] & 0x80) !== 0;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (!masked) {
        socket.destroy(); // client frames must be masked
        return;
      }
      if (buffer.length < offset + 4 + length) return;
      const mask = buffer.subarray(offset, offset + 4);
      const payload = Buffer.from(buffer.subarray(offset + 4, offset + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      buffer = buffer.subarray(offset + 4 + length);
      if (opcode === 0x8) {
        socket.end(frame(0x8, payload.subarray(0, 2)));
        return;
      } else if (opcode === 0x9) {
        socket.write(frame(0xa, payload));
      } else if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
        if (opcode !== 0x0) messageOpcode = opcode;
        message.push(payload);
        if (fin) {
          socket.write(frame(messageOpcode, Buffer.concat(message)));
          message = [];
        }
      }
    }
  }

  socket.on("data", (data) => {
    buffer = buffer.length ? Buffer.concat([buffer, data]) : data;
    parse();
  });
  socket.on("error", () => socket.destroy());
  parse();
}

server.on("upgrade", (req, socket, head) => {
  const key = req.headers["sec-websocket-key"];
  if (route(req.url) !== "/ws" || (req.headers.upgrade || "").toLowerCase() !== "websocket" || !key) {
    socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  const accept = crypto.createHash("sha1").update(key + WS_GUID).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "Upgrade: websocket\r\n" +
      "Connection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`
  );
  echoSocket(socket, head);
});

if (SOCKET) {
  // transport="unix": a socket file in Corral's private runtime folder, out of other users' reach.
  server.listen(SOCKET, () => console.log(`listening on ${SOCKET} (${MOUNT || "/"})`));
} else {
  server.listen(PORT, HOST, () => {
    console.log(`listening on http://${HOST}:${PORT}${MOUNT || "/"}`);
  });
}
