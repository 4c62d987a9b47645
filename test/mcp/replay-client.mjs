// A scripted MCP client session (@modelcontextprotocol/sdk) against a stdio
// server command, printing everything it observed as one JSON line on
// stdout. internal/stdioreplay's end-to-end test runs it once against
// server-everything behind a recording relay and once against the replay
// of that recording, and requires identical output.
//
// Usage: node replay-client.mjs COMMAND [ARGS...]
// The command inherits this process's environment. Exits non-zero on error.
import { createHash } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  EmptyResultSchema,
  ListRootsRequestSchema,
  ProgressNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [command, ...args] = process.argv.slice(2);
if (!command) {
  console.error("usage: node replay-client.mjs COMMAND [ARGS...]");
  process.exit(2);
}

const transport = new StdioClientTransport({ command, args, env: { ...process.env }, stderr: "pipe" });
let stderr = "";
transport.stderr?.on("data", (d) => (stderr += d));
const client = new Client(
  { name: "proxyctl-replay-e2e", version: "1.0.0" },
  { capabilities: { roots: {}, sampling: {} } },
);
// What the server sent on its own, in arrival order.
const seen = [];
client.fallbackNotificationHandler = async (n) => {
  seen.push({ notification: n.method, params: n.params });
};
// The SDK handles notifications in a microtask but responses at once, so its
// own onprogress callback misses a progress notification that arrives in the
// same read as the response (it happens with real servers too). Collect them
// all here instead.
const progress = [];
client.setNotificationHandler(ProgressNotificationSchema, async (n) => {
  progress.push(n.params);
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  seen.push({ request: "roots/list" });
  return { roots: [{ uri: "file:///tmp", name: "tmp" }] };
});
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  seen.push({ request: "sampling/createMessage", params: req.params });
  return { model: "replay-test-model", role: "assistant", content: { type: "text", text: "sampled answer" } };
});

const digest = (v) => {
  const s = JSON.stringify(v);
  return { bytes: s.length, sha256: createHash("sha256").update(s).digest("hex") };
};

const out = {};
try {
  await client.connect(transport);
  out.init = {
    serverVersion: client.getServerVersion(),
    capabilities: client.getServerCapabilities(),
    instructions: client.getInstructions(),
  };
  out.tools = await client.listTools();
  out.echo = await client.callTool({ name: "echo", arguments: { message: "hi" } });
  out.unicode = await client.callTool({ name: "echo", arguments: { message: "héllo 世界 🎉 \"quoted\" \\ back" } });
  out.big = digest(await client.callTool({ name: "echo", arguments: { message: "x".repeat(2 << 20) } }));
  out.echoAgain = await client.callTool({ name: "echo", arguments: { message: "hi" } });
  out.longRunning = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 0.3, steps: 3 } },
    undefined,
    { onprogress: () => {} }, // sends a progressToken
  );
  out.sampling = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "say hi", maxTokens: 5 } });
  out.sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } });
  try {
    await client.request({ method: "no/such-method", params: {} }, EmptyResultSchema);
  } catch (e) {
    out.unknown = { code: e.code, message: e.message };
  }
  out.ping = await client.ping();
  out.seen = seen;
  out.progress = progress;
} catch (e) {
  e.message += `\n--- stderr of ${command} ---\n${stderr}`;
  throw e;
} finally {
  await client.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
