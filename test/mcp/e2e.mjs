// End-to-end check of `proxyctl forward stdio` with a real MCP client
// (@modelcontextprotocol/sdk) and server (@modelcontextprotocol/server-everything):
// the same session run directly and through proxyctl must give identical results.
//
// Usage: node e2e.mjs /path/to/proxyctl
// Exits non-zero on any mismatch or error.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { EmptyResultSchema, ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const proxyctl = process.argv[2] ?? process.env.PROXYCTL_BIN;
if (!proxyctl) {
  console.error("usage: node e2e.mjs /path/to/proxyctl");
  process.exit(2);
}

const require = createRequire(import.meta.url);
const serverDir = path.dirname(require.resolve("@modelcontextprotocol/server-everything/package.json"));
const server = path.join(serverDir, "dist", "index.js");

async function session(command, args) {
  const transport = new StdioClientTransport({ command, args, env: { ...process.env }, stderr: "pipe" });
  let stderr = "";
  transport.stderr?.on("data", (d) => (stderr += d));
  const client = new Client({ name: "proxyctl-e2e", version: "1.0.0" }, { capabilities: { roots: {} } });
  // server-everything asks the client for its roots (a server->client request).
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: "file:///tmp", name: "tmp" }] }));
  try {
    await client.connect(transport);
    const init = {
      serverVersion: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
      instructions: client.getInstructions(),
    };
    const tools = await client.listTools();
    const echo = await client.callTool({ name: "echo", arguments: { message: "hi" } });
    const unicode = await client.callTool({ name: "echo", arguments: { message: "héllo 世界 🎉 \"quoted\" \\ back" } });
    const big = await client.callTool({ name: "echo", arguments: { message: "x".repeat(2 << 20) } });
    let unknown;
    try {
      await client.request({ method: "no/such-method", params: {} }, EmptyResultSchema);
    } catch (e) {
      unknown = { code: e.code, message: e.message };
    }
    return { init, tools, echo, unicode, big, unknown };
  } catch (e) {
    e.message += `\n--- stderr of ${command} ---\n${stderr}`;
    throw e;
  } finally {
    await client.close();
  }
}

const direct = await session(process.execPath, [server, "stdio"]);
const proxied = await session(proxyctl, ["forward", "stdio", "--admin-listen", "off", "--", process.execPath, server, "stdio"]);

assert.ok(direct.tools.tools.some((t) => t.name === "echo"), "server-everything lists an echo tool");
assert.equal(direct.echo.content[0].text.includes("hi"), true, "echo answers with its message");
assert.ok(direct.unknown && direct.unknown.code === -32601, `unknown method gives -32601, got ${JSON.stringify(direct.unknown)}`);
assert.deepStrictEqual(proxied.init, direct.init, "initialize results differ");
assert.deepStrictEqual(proxied.tools, direct.tools, "tools/list results differ");
assert.deepStrictEqual(proxied.echo, direct.echo, "tools/call echo results differ");
assert.deepStrictEqual(proxied.unicode, direct.unicode, "tools/call echo (unicode) results differ");
assert.deepStrictEqual(proxied.big, direct.big, "tools/call echo (2 MiB) results differ");
assert.deepStrictEqual(proxied.unknown, direct.unknown, "unknown-method errors differ");
console.log(`ok: ${direct.tools.tools.length} tools, echo ${JSON.stringify(direct.echo.content[0].text)}, identical through proxyctl`);
