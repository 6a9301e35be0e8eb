// driver.mjs hosts MCP client sessions of the official TypeScript SDKs for the
// Go tests in this directory: `ts-v1` is @modelcontextprotocol/sdk (the v1 line
// most hosts embed), `ts-v2` is @modelcontextprotocol/client (the v2 split
// client). The Go side writes one JSON request per line on stdin and reads one
// JSON reply per line on stdout:
//
//   {"id":1,"op":"connect","sdk":"ts-v1","transport":"stdio|sse|streamable-http",
//    "url":"…","headers":{…},"command":"…","args":[…],"env":{…},"pin":"|2025-11-25|2026-07-28"}
//     → {"id":1,"result":{"session":"s1","protocolVersion":"…","serverInfo":{…}}}
//   {"id":2,"op":"listTools","session":"s1"}           → {"id":2,"result":{"tools":[…]}}
//   {"id":3,"op":"callTool","session":"s1","name":"…","arguments":{…},"meta":{…}}
//     → {"id":3,"result":<CallToolResult as the SDK returned it>}
//   {"id":4,"op":"listResources","session":"s1"}       → {"id":4,"result":{"resources":[…]}} (the first page)
//   {"id":5,"op":"subscribe","session":"s1","uri":"…"} → {"id":5,"result":{}} (and "unsubscribe")
//   {"id":6,"op":"nextUpdate","session":"s1","timeoutMs":30000}
//     → {"id":6,"result":{"uri":"…"}}: the next notifications/resources/updated the session got
//   {"id":7,"op":"listen","session":"s1","filter":{…}} → {"id":7,"result":{"subscription":"l1","honored":{…}}}
//     (2026-07-28 subscriptions/listen: the filter the server acknowledged; "closeListen" with the id ends it)
//   {"id":8,"op":"close","session":"s1"}               → {"id":8,"result":{}}
//
// connect with "elicit":"decline" (ts-v2) declares elicitation and declines
// every question, as a host whose user says no; "asked" then lists the
// questions' messages ({"op":"asked","session":"s1"} → {"messages":[…]}).
//
// A failure replies {"id":…,"error":{"message":"…","code":…}}. The story and
// its assertions live in Go, so every client is held to the same story; this
// file only drives each SDK the way a host application would.
import readline from 'node:readline';

import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport as SSEV1 } from '@modelcontextprotocol/sdk/client/sse.js';
import { StdioClientTransport as StdioV1 } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport as HTTPV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as ClientV2, SSEClientTransport as SSEV2, StreamableHTTPClientTransport as HTTPV2 } from '@modelcontextprotocol/client';
import { StdioClientTransport as StdioV2 } from '@modelcontextprotocol/client/stdio';

const sdks = {
  'ts-v1': { Client: ClientV1, Stdio: StdioV1, SSE: SSEV1, HTTP: HTTPV1 },
  'ts-v2': { Client: ClientV2, Stdio: StdioV2, SSE: SSEV2, HTTP: HTTPV2 },
};

const sessions = new Map();
let nextSession = 0;

function transportFor(sdk, req) {
  switch (req.transport) {
    case 'stdio':
      // Like a host: the server is a child process with the configured env
      // (the SDK adds its default inherited variables such as PATH and HOME).
      return new sdk.Stdio({ command: req.command, args: req.args, env: req.env, stderr: 'pipe' });
    case 'sse':
      return new sdk.SSE(new URL(req.url), { requestInit: { headers: req.headers } });
    case 'streamable-http':
      return new sdk.HTTP(new URL(req.url), { requestInit: { headers: req.headers } });
    default:
      throw new Error(`unknown transport ${req.transport}`);
  }
}

// clientOptions pins a protocol revision the way each SDK allows it.
function clientOptions(sdkName, pin) {
  if (!pin) return {};
  if (sdkName === 'ts-v1') {
    // v1 always initializes with its LATEST_PROTOCOL_VERSION (2025-11-25) and
    // cannot speak 2026-07-28 at all.
    if (pin === '2025-11-25') return {};
    throw new Error(`ts-v1 cannot pin ${pin}`);
  }
  if (pin === '2025-11-25') return { supportedProtocolVersions: ['2025-11-25'] };
  return { versionNegotiation: { mode: { pin } } };
}

async function connect(req) {
  const sdk = sdks[req.sdk];
  if (!sdk) throw new Error(`unknown sdk ${req.sdk}`);
  const transport = transportFor(sdk, req);
  let stderr = '';
  if (req.transport === 'stdio' && transport.stderr) {
    transport.stderr.on('data', (d) => { stderr = (stderr + d).slice(-16384); });
  }
  // v1 tells the transport the negotiated revision through
  // setProtocolVersion (stdio has none): record what it says.
  let negotiated;
  const set = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (v) => { negotiated = v; set?.(v); };
  const options = clientOptions(req.sdk, req.pin);
  const asked = [];
  if (req.elicit) {
    if (req.sdk !== 'ts-v2') throw new Error('elicit is driven for ts-v2 only');
    options.capabilities = { elicitation: {} };
  }
  const client = new sdk.Client({ name: `connec-interop-${req.sdk}`, version: '1.0.0' }, options);
  if (req.elicit) {
    client.setRequestHandler('elicitation/create', async (r) => {
      asked.push(r.params?.message ?? '');
      return { action: req.elicit };
    });
  }
  // Resource updates queue up until nextUpdate takes them.
  const updates = { queue: [], waiters: [] };
  const onUpdate = (n) => {
    const w = updates.waiters.shift();
    if (w) w(n.params.uri);
    else updates.queue.push(n.params.uri);
  };
  if (req.sdk === 'ts-v1') client.setNotificationHandler(ResourceUpdatedNotificationSchema, onUpdate);
  else client.setNotificationHandler('notifications/resources/updated', onUpdate);
  try {
    await client.connect(transport, { timeout: 60000 });
  } catch (e) {
    await transport.close?.().catch(() => {});
    if (stderr) e.message += `\nserver stderr:\n${stderr}`;
    throw e;
  }
  const id = `s${++nextSession}`;
  sessions.set(id, { client, transport, updates, asked, stderr: () => stderr });
  const version = client.getNegotiatedProtocolVersion?.() ?? negotiated;
  return { session: id, protocolVersion: version ?? '', serverInfo: client.getServerVersion() };
}

function session(req) {
  const s = sessions.get(req.session);
  if (!s) throw new Error(`no session ${req.session}`);
  return s;
}

async function listTools(req) {
  const { client } = session(req);
  const tools = [];
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : {}, { timeout: 60000 });
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor);
  return { tools };
}

async function callTool(req) {
  const { client } = session(req);
  const params = { name: req.name, arguments: req.arguments ?? {} };
  if (req.meta) params._meta = req.meta;
  return client.callTool(params, undefined, { timeout: 60000 });
}

async function listResources(req) {
  const { client } = session(req);
  return client.listResources({}, { timeout: 60000 });
}

async function subscribe(req) {
  const { client } = session(req);
  await client.subscribeResource({ uri: req.uri }, { timeout: 60000 });
  return {};
}

async function unsubscribe(req) {
  const { client } = session(req);
  await client.unsubscribeResource({ uri: req.uri }, { timeout: 60000 });
  return {};
}

async function nextUpdate(req) {
  const { updates } = session(req);
  if (updates.queue.length > 0) return { uri: updates.queue.shift() };
  return new Promise((resolve, reject) => {
    const waiter = (uri) => { clearTimeout(timer); resolve({ uri }); };
    const timer = setTimeout(() => {
      updates.waiters = updates.waiters.filter((w) => w !== waiter);
      reject(new Error('no resource update came'));
    }, req.timeoutMs ?? 30000);
    updates.waiters.push(waiter);
  });
}

const listens = new Map();
let nextListen = 0;

async function listen(req) {
  const { client } = session(req);
  const sub = await client.listen(req.filter, { timeout: 60000 });
  const id = `l${++nextListen}`;
  listens.set(id, sub);
  return { subscription: id, honored: sub.honoredFilter };
}

async function closeListen(req) {
  const sub = listens.get(req.subscription);
  if (!sub) throw new Error(`no subscription ${req.subscription}`);
  listens.delete(req.subscription);
  await sub.close();
  return {};
}

async function close(req) {
  const s = session(req);
  sessions.delete(req.session);
  await s.client.close();
  return {};
}

async function askedOp(req) {
  return { messages: session(req).asked };
}

const ops = { connect, asked: askedOp, listTools, callTool, listResources, subscribe, unsubscribe, nextUpdate, listen, closeListen, close };

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ id: 0, error: { message: `bad request line: ${e.message}` } });
    return;
  }
  const op = ops[req.op];
  if (!op) {
    reply({ id: req.id, error: { message: `unknown op ${req.op}` } });
    return;
  }
  // Requests run concurrently: the Go side runs several stories at once.
  Promise.resolve()
    .then(() => op(req))
    .then(
      (result) => reply({ id: req.id, result }),
      (e) => reply({ id: req.id, error: { message: String(e?.message ?? e), code: e?.code, data: e?.data } }),
    );
});
rl.on('close', async () => {
  await Promise.allSettled([...sessions.values()].map((s) => s.client.close()));
  process.exit(0);
});
