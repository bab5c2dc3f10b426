// Corral's dashboard: draws the status document that /events sends every second (see
// corral/ops/dashboard.py), and posts the restart and scale actions with the page's CSRF value.
// No other origin is contacted; every value is put in the page as text, never as HTML.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="corral-csrf"]').content;
  const SVG = "http://www.w3.org/2000/svg";
  const SPAN = 300; // seconds the charts cover (SERIES_SECONDS)
  const cards = new Map();

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }
  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 1) return (value * 1000).toFixed(value < 0.01 ? 1 : 0) + " ms";
    return value.toFixed(2) + " s";
  }
  function duration(value) {
    if (value === null || value === undefined) return "–";
    const s = Math.floor(value);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function rate(value) {
    return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  }
  function figure(label, field) {
    return el("div", { class: "figure" },
      el("span", { class: "label", text: label }),
      el("span", { class: "num", "data-field": field, text: "–" }));
  }
  function setFields(root, values) {
    for (const [field, value] of Object.entries(values)) {
      const node = root.querySelector('[data-field="' + field + '"]');
      if (node && node.textContent !== String(value)) node.textContent = String(value);
    }
  }
  function badge(node, state) {
    node.textContent = state;
    node.className = "badge " + state.replace(/\s+/g, "-");
  }

  // ------------------------------------------------------------------ charts
  function chart(title) {
    const box = el("div", { class: "chart" });
    const head = el("div", { class: "title" }, el("span", { text: title }),
      el("span", { class: "peak", text: "" }));
    const plot = svg("svg", { viewBox: "0 0 300 70", preserveAspectRatio: "none",
      role: "img", "aria-label": title });
    box.append(head, plot);
    return box;
  }
  function drawChart(box, points, pick, format, extra) {
    const plot = box.querySelector("svg");
    while (plot.firstChild) plot.firstChild.remove();
    for (const y of [17.5, 35, 52.5]) {
      plot.append(svg("line", { class: "grid", x1: 0, x2: 300, y1: y, y2: y }));
    }
    const values = points.map(pick).filter((v) => v !== null);
    const extras = extra ? points.map(extra) : [];
    const peak = Math.max(0, ...values, ...extras);
    box.querySelector(".peak").textContent = values.length ? "peak " + format(peak) : "";
    if (points.length < 2 || peak <= 0) {
      const text = svg("text", { class: "empty", x: 150, y: 40, "text-anchor": "middle" });
      text.textContent = points.length < 2 ? "collecting…" : "no requests";
      plot.append(text);
      return;
    }
    const x = (ago) => 300 - (Math.min(ago, SPAN) / SPAN) * 300;
    const y = (v) => 68 - (v / peak) * 62;
    const line = points.filter((p) => pick(p) !== null)
      .map((p) => x(p[0]).toFixed(1) + "," + y(pick(p)).toFixed(1));
    if (line.length) {
      const first = line[0].split(",")[0], last = line[line.length - 1].split(",")[0];
      plot.append(svg("polygon", { class: "area",
        points: first + ",70 " + line.join(" ") + " " + last + ",70" }));
      plot.append(svg("polyline", { class: "line", points: line.join(" ") }));
    }
    if (extra && extras.some((v) => v > 0)) {
      plot.append(svg("polyline", { class: "errors",
        points: points.map((p) => x(p[0]).toFixed(1) + "," + y(extra(p)).toFixed(1)).join(" ") }));
    }
  }

  // ------------------------------------------------------------------ actions
  async function post(path, body, message, button) {
    button.disabled = true;
    message.className = "message";
    message.textContent = path.endsWith("restart") ? "restarting…" : "applying…";
    try {
      const response = await fetch(path, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Corral-CSRF": csrf },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({ ok: false, message: response.statusText }));
      message.textContent = answer.message;
      if (!answer.ok) message.className = "message error";
    } catch (error) {
      message.textContent = "failed: " + error;
      message.className = "message error";
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ one application
  function card(app) {
    const section = el("section", { class: "app", "data-app": app.id });
    const state = el("span", { class: "badge", "data-role": "state" });
    section.append(el("div", { class: "app-head" },
      el("h2", {}, document.createTextNode(app.id + " "), state),
      el("span", { class: "where", "data-field": "where" })));
    section.append(el("p", { class: "reason", "data-role": "reason", hidden: "" }));
    const figures = el("div", { class: "figures" });
    for (const [label, field] of [["requests/s (1 min)", "rate"], ["p99 (1 min)", "p99"],
      ["mean (1 min)", "mean"], ["requests", "total"], ["5xx", "errors"],
      ["in flight", "in_flight"], ["queued", "queue"], ["oldest wait", "wait"],
      ["workers", "workers"], ["restarts", "restarts"], ["crashes", "crashed"],
      ["failed starts", "failed_starts"]]) {
      figures.append(figure(label, field));
    }
    section.append(figures);
    const rateChart = chart("requests/s, 5xx/s (red) — last 5 min");
    const latencyChart = chart("p99 duration — last 5 min");
    rateChart.dataset.role = "rate-chart";
    latencyChart.dataset.role = "latency-chart";
    section.append(el("div", { class: "charts" }, rateChart, latencyChart));

    const message = el("span", { class: "message", "data-role": "message" });
    const restart = el("button", { type: "button", "data-action": "restart", text: "Restart" });
    const low = el("input", { type: "number", min: "0", step: "1", "data-input": "min",
      "aria-label": "least workers" });
    const high = el("input", { type: "number", min: "0", step: "1", "data-input": "max",
      "aria-label": "most workers" });
    const scale = el("button", { type: "button", "data-action": "scale", text: "Set workers" });
    restart.addEventListener("click", () => post("/api/restart", { app: app.id }, message, restart));
    scale.addEventListener("click", () => {
      post("/api/scale", { app: app.id, min: Number(low.value), max: Number(high.value) },
        message, scale).then(() => { low.dataset.dirty = ""; high.dataset.dirty = ""; });
    });
    for (const input of [low, high]) {
      input.addEventListener("input", () => { input.dataset.dirty = "1"; });
    }
    section.append(el("div", { class: "controls" }, restart,
      el("label", {}, document.createTextNode("min "), low),
      el("label", {}, document.createTextNode("max "), high), scale, message));

    section.append(el("h3", { text: "Workers" }));
    const table = el("table", {}, el("thead", {}, el("tr", {},
      ...["id", "pid", "state", "up", "requests", "in flight", "memory", "CPU"].map((h, i) =>
        el("th", { class: i > 3 ? "right" : "", text: h })))), el("tbody"));
    section.append(el("div", { class: "scroll" }, table));
    const log = el("pre", { class: "log", "data-role": "log" });
    section.append(el("details", { open: "" }, el("summary", { text: "Recent log lines" }), log));
    return section;
  }

  function updateCard(section, app) {
    badge(section.querySelector('[data-role="state"]'), app.state);
    const reason = section.querySelector('[data-role="reason"]');
    reason.hidden = !app.reason;
    reason.textContent = app.reason || "";
    const req = app.requests;
    const ready = app.workers.filter((w) => ["idle", "busy", "probing"].includes(w.state)).length;
    setFields(section, {
      where: app.engine + " · " + (app.site ? app.site + " " : "") + app.virtual_path,
      rate: rate(req.rate), p99: seconds(req.p99), mean: seconds(req.mean), total: req.total,
      errors: req.by_class["5xx"], in_flight: app.in_flight, queue: app.queue_length,
      wait: seconds(app.oldest_wait), workers: ready + " / " + app.min_workers + "–" + app.max_workers,
      restarts: app.restarts, crashed: app.crashed, failed_starts: app.failed_starts,
    });
    for (const [name, value] of [["min", app.min_workers], ["max", app.max_workers]]) {
      const input = section.querySelector('[data-input="' + name + '"]');
      if (document.activeElement !== input && !input.dataset.dirty) input.value = value;
    }
    drawChart(section.querySelector('[data-role="rate-chart"]'), app.series, (p) => p[1],
      rate, (p) => p[3]);
    drawChart(section.querySelector('[data-role="latency-chart"]'), app.series, (p) => p[2],
      seconds);
    const body = section.querySelector("tbody");
    body.replaceChildren(...app.workers.map((w) => el("tr", { "data-pid": w.pid ?? "" },
      el("td", { text: w.id }), el("td", { class: "num-id", text: w.pid ?? "–" }),
      el("td", { text: w.retiring ? w.state + " (" + w.retiring + ")" : w.state }),
      el("td", { text: duration(w.age) }), el("td", { class: "num", text: w.requests }),
      el("td", { class: "num", text: w.in_flight }),
      el("td", { class: "num", text: w.rss_mb === null ? "–" : w.rss_mb.toFixed(1) + " MiB" }),
      el("td", { class: "num", text: w.cpu_seconds === null ? "–" : w.cpu_seconds.toFixed(2) + " s" }))));
    if (!app.workers.length) {
      body.append(el("tr", {}, el("td", { colspan: "8", text: "no worker running" })));
    }
    const log = section.querySelector('[data-role="log"]');
    const text = app.log.length ? app.log.join("\n") : "(nothing logged since the admin listener started)";
    if (log.textContent !== text) {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = text;
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
  }

  // ------------------------------------------------------------------ the whole page
  function render(doc) {
    badge(document.getElementById("host-state"), doc.state);
    badge(document.getElementById("ready"), doc.ready ? "ready" : "not ready");
    const notReady = document.getElementById("not-ready");
    notReady.hidden = doc.ready;
    notReady.textContent = doc.not_ready.join("\n");
    const host = document.getElementById("host-figures");
    if (!host.childElementCount) {
      for (const [label, field] of [["uptime", "uptime"], ["applications", "apps"],
        ["connections open", "open"], ["connections", "opened"], ["refused requests", "refused"],
        ["pid", "pid"]]) host.append(figure(label, field));
    }
    const refused = Object.values(doc.front.protocol_errors).reduce((a, b) => a + b, 0);
    setFields(host, { uptime: duration(doc.uptime), apps: doc.apps.length,
      open: doc.front.connections_open, opened: doc.front.connections_opened,
      refused: refused, pid: doc.pid });
    document.getElementById("footer").textContent = "Corral " + doc.version + " · " +
      doc.listening.join(" ");
    const main = document.getElementById("apps");
    const seen = new Set();
    for (const app of doc.apps) {
      seen.add(app.id);
      let section = cards.get(app.id);
      if (!section) {
        section = card(app);
        cards.set(app.id, section);
      }
      main.append(section); // keeps the document's order
      updateCard(section, app);
    }
    for (const [id, section] of cards) {
      if (!seen.has(id)) { section.remove(); cards.delete(id); }
    }
    document.body.dataset.updated = String(Date.now());
  }

  const events = new EventSource("/events");
  events.addEventListener("status", (message) => {
    document.getElementById("offline").hidden = true;
    render(JSON.parse(message.data));
  });
  events.addEventListener("error", () => {
    document.getElementById("offline").hidden = false;
  });
})();
