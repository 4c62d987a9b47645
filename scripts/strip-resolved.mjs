// Removes "resolved" (download URL) fields from a package-lock.json, keeping
// "integrity": the repository must not name a package registry's host.
// Run after `npm install` changes a lock file:
//   node scripts/strip-resolved.mjs test/mcp [test/dynalite bench/replay ...]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error("usage: node scripts/strip-resolved.mjs DIR...");
  process.exit(2);
}
for (const dir of dirs) {
  const file = join(dir, "package-lock.json");
  const lock = JSON.parse(readFileSync(file, "utf8"));
  let n = 0;
  for (const pkg of Object.values(lock.packages ?? {})) {
    if ("resolved" in pkg) {
      delete pkg.resolved;
      n++;
    }
  }
  writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
  console.log(`${file}: removed ${n} resolved field(s)`);
}
