// Removes "resolved" (download URL) fields from package-lock.json, keeping
// "integrity": the repository must not name a package registry's host.
// Run after `npm install` changes the lockfile: node strip-resolved.mjs
import { readFileSync, writeFileSync } from "node:fs";

const file = new URL("./package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
let n = 0;
for (const pkg of Object.values(lock.packages ?? {})) {
  if ("resolved" in pkg) {
    delete pkg.resolved;
    n++;
  }
}
writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
console.log(`removed ${n} resolved field(s)`);
