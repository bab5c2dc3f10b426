// This site's deploy script (DEPLOY_FILE): Corral runs it with node before the application's
// first request, and again when this file changes; meanwhile requests get the "deployment in
// progress" page with what it prints. It installs package.json's dependencies into
// ./node_modules. Add the steps your application needs (database migrations...).

"use strict";

const { spawnSync } = require("child_process");

const argv = ["install", "--omit=dev", "--no-audit", "--no-fund"];
console.log(`$ npm ${argv.join(" ")}`);
const result = spawnSync("npm", argv, { cwd: __dirname, stdio: "inherit" });
if (result.error) {
  console.log(`Failed: npm could not run: ${result.error.message}`);
  process.exit(1);
}
if (result.status !== 0) {
  console.log(`Failed: npm exited with ${result.status}`);
  process.exit(1);
}
console.log("Deployed.");
