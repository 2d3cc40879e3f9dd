// Drive toolgate's /mcp endpoint with the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk 1.32.2, which negotiates 2025-11-25 with an Mcp-Session-Id).
//
//   TOOLGATE_NODE_PREFIX=<prefix printed by `tests/clients/setup.sh node`> node tests/clients/mcp_node.mjs
//
// Without TOOLGATE_NODE_PREFIX the SDK is looked up like require() would (NODE_PATH included).
// The other variables are those of mcp_python.py: TOOLGATE_MCP_URL, TOOLGATE_KEY,
// TOOLGATE_DENIED_TOOL[_INPUT], TOOLGATE_SLOW_TOOL[_INPUT], TOOLGATE_LOG_TOOL[_INPUT]
// (TOOLGATE_MCP_MODE is ignored: this SDK only speaks the initialize era).
//
// The cancelled slow tool's task must end `cancelled` (GET <root>/v1/sessions/<id>/tasks).
//
// Each step asserts; the first failure prints `FAIL [step] ...` on stderr and exits 1 (2 for bad
// usage, 3 when the SDK cannot be found). On success the last line of stdout is one JSON object:
//   {"protocol", "session", "tasks": {"write", "read", "denied"}, "progress", "logs", ...}

import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const STEP_TIMEOUT_MS = 60_000;
const CANCEL_AFTER_MS = 1_000;
const CANCEL_BOUND_MS = 5_000;

class Failure extends Error {}
const fail = (step, msg) => {
  throw new Failure(`[${step}] ${msg}`);
};
const check = (cond, step, msg) => {
  if (!cond) fail(step, msg);
};

function envJson(name, dflt) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  try {
    return JSON.parse(raw);
  } catch (e) {
    console.error(`toolgate: ${name} is not JSON: ${e.message}`);
    process.exit(2);
  }
}

// The SDK's package directory: under TOOLGATE_NODE_PREFIX, or wherever require() finds it.
function sdkRoot() {
  const prefix = process.env.TOOLGATE_NODE_PREFIX;
  if (prefix) {
    const root = join(prefix, 'node_modules', '@modelcontextprotocol', 'sdk');
    if (!existsSync(join(root, 'package.json'))) {
      console.error(`toolgate: cannot find the TypeScript MCP client: no @modelcontextprotocol/sdk under ${prefix}`);
      process.exit(3);
    }
    return root;
  }
  try {
    const entry = createRequire(import.meta.url).resolve('@modelcontextprotocol/sdk/client');
    return entry.slice(0, entry.lastIndexOf(`${sep}dist${sep}`));
  } catch (e) {
    console.error(
      'toolgate: cannot find the TypeScript MCP client: set TOOLGATE_NODE_PREFIX to the prefix printed by setup.sh node',
    );
    process.exit(3);
  }
}

const root = sdkRoot();
const esm = (p) => import(pathToFileURL(join(root, 'dist', 'esm', p)).href);
const sdkVersion = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const { Client } = await esm('client/index.js');
const { StreamableHTTPClientTransport } = await esm('client/streamableHttp.js');
const { LoggingMessageNotificationSchema, McpError } = await esm('types.js');

const textOf = (r) => (r.content ?? []).filter((b) => b.type === 'text').map((b) => b.text).join('\n');
const dump = (r) => JSON.stringify(r).slice(0, 2000);

// toolgate's API root for an MCP endpoint URL (the endpoint is `<root>/mcp`).
function apiBase(mcpUrl) {
  const u = new URL(mcpUrl);
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.origin}${path.slice(0, path.lastIndexOf('/'))}`;
}

function metaOf(step, r) {
  const meta = r._meta ?? {};
  const session = meta['toolgate/session'];
  const task = meta['toolgate/task'];
  check(typeof session === 'string' && session, step, `result _meta has no toolgate/session: ${dump(r)}`);
  check(typeof task === 'string' && task, step, `result _meta has no toolgate/task: ${dump(r)}`);
  check('toolgate/state' in meta, step, `result _meta has no toolgate/state: ${dump(r)}`);
  return [session, task];
}

async function run(cfg) {
  const counts = { progress: 0, logs: 0 };
  const logRecords = [];
  const out = {};
  const opts = { timeout: STEP_TIMEOUT_MS };

  const transport = new StreamableHTTPClientTransport(new URL(cfg.url), {
    requestInit: { headers: { Authorization: `Bearer ${cfg.key}` } },
  });
  const client = new Client({ name: 'toolgate-test', version: '0.0.1' });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    counts.logs += 1;
    logRecords.push(n.params);
  });

  let step = 'connect';
  try {
    await client.connect(transport, opts);
    out.protocol = transport.protocolVersion;
    check(out.protocol === '2025-11-25', step, `negotiated ${out.protocol}, expected 2025-11-25`);
    check(transport.sessionId, step, 'the server gave no Mcp-Session-Id');
    await client.setLoggingLevel('debug', opts);

    // a. tools/list
    step = 'list';
    const listed = (await client.listTools(undefined, opts)).tools;
    const tools = new Map(listed.map((t) => [t.name, t]));
    const names = JSON.stringify([...tools.keys()].sort());
    for (const name of ['fs.read', 'fs.write']) {
      check(tools.has(name), step, `${name} missing from tools/list: ${names}`);
      const schema = tools.get(name).inputSchema;
      check(schema && schema.type === 'object', step, `${name} inputSchema is not an object schema: ${JSON.stringify(schema)}`);
    }
    check(!tools.has(cfg.denied), step, `denied tool ${cfg.denied} is listed: ${names}`);
    for (const [what, name] of [['slow', cfg.slow], ['log', cfg.log]]) {
      if (name) check(tools.has(name), step, `${name} (${what} tool) missing from tools/list: ${names}`);
    }

    // b. fs.write then fs.read round trip
    step = 'write';
    const content = `written by the TypeScript MCP client (@modelcontextprotocol/sdk ${sdkVersion})\n`;
    let r = await client.callTool({ name: 'fs.write', arguments: { path: 'from-node.txt', content } }, undefined, opts);
    check(!r.isError, step, `fs.write failed: ${dump(r)}`);
    const [session, writeTask] = metaOf(step, r);
    const pinned = new URL(cfg.url).searchParams.get('session');
    if (pinned) check(session === pinned, step, `?session=${pinned} on the URL, but the call ran in ${session}`);

    step = 'read';
    r = await client.callTool({ name: 'fs.read', arguments: { path: 'from-node.txt' } }, undefined, opts);
    check(!r.isError, step, `fs.read failed: ${dump(r)}`);
    const [s2, readTask] = metaOf(step, r);
    check(s2 === session, step, `toolgate session changed between calls: ${session} then ${s2}`);
    let got = r.structuredContent?.content;
    if (got === undefined) {
      try {
        got = JSON.parse(textOf(r)).content;
      } catch {
        got = undefined;
      }
    }
    check(got === content, step, `fs.read returned ${JSON.stringify(got)}, wrote ${JSON.stringify(content)}: ${dump(r)}`);

    // c. a tool the policy forbids: a tool result with isError, not a protocol error
    step = 'denied';
    try {
      r = await client.callTool({ name: cfg.denied, arguments: cfg.deniedInput }, undefined, opts);
    } catch (e) {
      if (e instanceof Failure) throw e;
      fail(step, `${cfg.denied} raised ${e.name} ${e.code ?? ''} ${e.message}; expected a result with isError`);
    }
    check(r.isError === true, step, `${cfg.denied} was not refused: ${dump(r)}`);
    check(textOf(r).includes('denied'), step, `refusal text does not say denied: ${dump(r)}`);
    const [s3, deniedTask] = metaOf(step, r);
    check(s3 === session, step, `toolgate session changed between calls: ${session} then ${s3}`);

    // d. unknown tool: a JSON-RPC error -32602
    step = 'unknown';
    let raised = null;
    try {
      r = await client.callTool({ name: 'nope.nothing', arguments: {} }, undefined, opts);
    } catch (e) {
      raised = e;
    }
    check(raised, step, `nope.nothing did not raise a JSON-RPC error: ${dump(r)}`);
    check(raised instanceof McpError, step, `nope.nothing raised ${raised?.name}: ${raised?.message}`);
    check(raised.code === -32602, step, `unknown tool gave error ${raised.code} ${raised.message}, expected -32602`);

    // e. cancellation: abort the slow tool after ~1 s (the SDK sends notifications/cancelled)
    if (cfg.slow) {
      step = 'cancel';
      // The server side is checked through toolgate's REST API, next to the endpoint.
      const tasksUrl = `${apiBase(cfg.url)}/v1/sessions/${session}/tasks?tool=${encodeURIComponent(cfg.slow)}&limit=50`;
      const slowTasks = async () => {
        const resp = await fetch(tasksUrl, { headers: { Authorization: `Bearer ${cfg.key}` } });
        const body = await resp.text();
        check(resp.status === 200, step, `GET ${tasksUrl}: ${resp.status} ${body.slice(0, 300)}`);
        return new Map(JSON.parse(body).tasks.map((t) => [t.id, t.state]));
      };
      const before = await slowTasks();
      const ac = new AbortController();
      const started = performance.now();
      const timer = setTimeout(() => ac.abort('cancelled by the test'), CANCEL_AFTER_MS);
      let finished = null;
      let cancelErr = null;
      try {
        finished = await client.callTool({ name: cfg.slow, arguments: cfg.slowInput }, undefined, {
          ...opts,
          signal: ac.signal,
        });
      } catch (e) {
        cancelErr = e;
      } finally {
        clearTimeout(timer);
      }
      const elapsed = performance.now() - started;
      check(
        ac.signal.aborted && cancelErr,
        step,
        `${cfg.slow} finished before it could be cancelled (${(elapsed / 1000).toFixed(2)} s): ${finished && dump(finished)}`,
      );
      check(elapsed < CANCEL_BOUND_MS, step, `cancelling ${cfg.slow} took ${(elapsed / 1000).toFixed(2)} s`);
      out.cancel_seconds = Math.round(elapsed) / 1000;
      // The session must still work after a cancelled request.
      const again = performance.now();
      r = await client.callTool({ name: 'fs.read', arguments: { path: 'from-node.txt' } }, undefined, opts);
      check(!r.isError, step, `fs.read after the cancel failed: ${dump(r)}`);
      out.after_cancel_seconds = Math.round(performance.now() - again) / 1000;
      // The server must have cancelled the task (not left it running to its end).
      let fresh = new Map();
      const deadline = performance.now() + CANCEL_BOUND_MS;
      while (performance.now() < deadline) {
        fresh = new Map([...(await slowTasks())].filter(([id]) => !before.has(id)));
        if (fresh.size && [...fresh.values()].every((st) => st !== 'queued' && st !== 'running')) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const states = JSON.stringify(Object.fromEntries(fresh));
      check(fresh.size, step, `no ${cfg.slow} task of this call in ${tasksUrl}`);
      check(
        [...fresh.values()].every((st) => st === 'cancelled'),
        step,
        `the server did not cancel the task within ${CANCEL_BOUND_MS / 1000} s: ${states}`,
      );
      out.cancelled_tasks = Object.fromEntries(fresh);
    }

    // f. logging and progress (counted and reported, not asserted)
    if (cfg.log) {
      step = 'log';
      r = await client.callTool({ name: cfg.log, arguments: cfg.logInput }, undefined, {
        ...opts,
        onprogress: () => {
          counts.progress += 1;
        },
      });
      check(!r.isError, step, `${cfg.log} failed: ${dump(r)}`);
      // Notifications may trail the response by a moment.
      await new Promise((res) => setTimeout(res, 300));
      out.log_records = logRecords.slice(0, 5);
    } else {
      counts.progress = null;
      counts.logs = null;
    }

    Object.assign(out, {
      session,
      tasks: { write: writeTask, read: readTask, denied: deniedTask },
      progress: counts.progress,
      logs: counts.logs,
      sdk: sdkVersion,
    });
    return out;
  } catch (e) {
    if (e instanceof Failure) throw e;
    throw new Failure(`[${step}] unexpected ${e?.name ?? 'error'}${e?.code !== undefined ? ` ${e.code}` : ''}: ${e?.message ?? e}`);
  } finally {
    try {
      if (transport.sessionId) await transport.terminateSession();
    } catch {
      // the session ends with the server's idle timeout anyway
    }
    await client.close().catch(() => {});
  }
}

const url = process.env.TOOLGATE_MCP_URL;
const key = process.env.TOOLGATE_KEY;
if (!url || !key) {
  console.error('toolgate: set TOOLGATE_MCP_URL and TOOLGATE_KEY');
  process.exit(2);
}
const cfg = {
  url,
  key,
  denied: process.env.TOOLGATE_DENIED_TOOL || 'http.fetch',
  deniedInput: envJson('TOOLGATE_DENIED_TOOL_INPUT', { url: 'https://example.com' }),
  slow: process.env.TOOLGATE_SLOW_TOOL || null,
  slowInput: envJson('TOOLGATE_SLOW_TOOL_INPUT', {}),
  log: process.env.TOOLGATE_LOG_TOOL || null,
  logInput: envJson('TOOLGATE_LOG_TOOL_INPUT', {}),
};

try {
  const out = await run(cfg);
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.error(`FAIL ${e instanceof Failure ? e.message : `unexpected ${e?.stack ?? e}`}`);
  process.exit(1);
}
