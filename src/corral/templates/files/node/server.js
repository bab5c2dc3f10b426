// A new Node.js application (`corral new node`): Express, run by Corral's built-in
// `nodejs.http` engine (`node server.js` on the port Corral gives it in PORT/HOST, proxied over
// HTTP). deploy.js installs package.json's dependencies into ./node_modules first.
//
// APPL_VIRTUAL_PATH says where the application is mounted ("/" or "/app"); Corral passes the
// whole URL path, so the routes are mounted there.

"use strict";

const express = require("express");

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || "127.0.0.1";
const MOUNT = (process.env.APPL_VIRTUAL_PATH || "/").replace(/\/+$/, "") || "/";

const routes = express.Router();

routes.get("/", (req, res) => {
  res.type("html").send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Node.js on Corral</title>
<style>body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; }</style>
</head><body>
<h1>Node.js on Corral</h1>
<p>It works: this is <code>server.js</code> (Express) under Node.js ${process.version}, process
${process.pid}. Add packages to <code>package.json</code> and save <code>deploy.js</code> (or
touch it) to install them; see also <a href="api/hello">a JSON route</a>.</p>
</body></html>
`);
});

routes.get("/api/hello", (req, res) => {
  res.json({ message: `Hello, ${req.query.name || "world"}!` });
});

const app = express();
app.use(MOUNT, routes);
app.listen(PORT, HOST, () => {
  console.log(`listening on ${HOST}:${PORT}, mounted at ${MOUNT}`);
});
