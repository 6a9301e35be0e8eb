// connec OpenClaw plugin host.
//
// Loads ONE OpenClaw plugin and serves it to connec over line-delimited
// JSON-RPC 2.0 on stdin/stdout. It has no dependencies (TypeScript entries
// need the "amaro" package inside the plugin's install directory, which
// `connec openclaw add` puts there).
//
// connec starts it in a sandbox the kernel enforces (internal/platform/sandbox):
// a root of its own holding only node, this file, the plugin (read-only)
// and the egress proxy's socket, a tmpfs home, its own PID and network
// namespaces, an unprivileged uid, Landlock, seccomp and resource limits;
// one host per call. Inside that, Node's permission model (read: this file
// and the plugin directory; write: the home; no child processes, no
// workers, no addons) and the network patches below are a second line.
//
// Protocol (one JSON object per line, stdout carries frames only):
//
//	host → connec  {"method":"ready","params":{...}}                 once, after loading the plugin
//	connec → host  describe                                          → {plugin, tools, channels, unsupported, register_error?}
//	               tools/call   {tool, params, config, tool_call_id} → the tool's result {content, details}
//	               channel/send {channel, to, text, config}          → the channel's delivery result
//	               $/cancel     {id}  (notification)                 aborts that call; it answers "cancelled" at once
//	               shutdown                                          → {} and the host exits
//
// config is {plugin: {...}, channels: {...}, env: {...}}: it carries the
// call's credential (put there by connec), reaches the plugin only through
// a registration made for that one call (api.pluginConfig, api.config,
// ctx.cfg, and process.env as seen from JavaScript), and is dropped when the
// call ends. Nothing secret is ever in this process's OS environment, its
// argv, a file, or its logs.
//
// Everything of the OpenClaw plugin API this host does not serve is
// recorded (and listed by describe) and answers the plugin with a clear
// Error when called.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Console } from 'node:console';
import { createRequire } from 'node:module';
import { installNetwork } from './egress.mjs';
import { pathToFileURL, fileURLToPath } from 'node:url';

const HOST_VERSION = 'connec-openclaw-host/1';

// ---- arguments (none of them secret) ---------------------------------------

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith('--')) continue;
    a[k.slice(2)] = argv[i + 1];
    i++;
  }
  return a;
}
const args = parseArgs(process.argv.slice(2));
const PLUGIN_DIR = args['plugin-dir'];
const ENTRY = args['entry'];
const PROXY_SOCKET = args['proxy'];
const TS_RUNTIME = args['ts-runtime'] || '';
const MAX_FRAME = Number(args['max-frame'] || 4 << 20);
// --no-guards (connec's tests only): no refusing patches, to show that the
// operating system alone holds.
const GUARDS = !args['no-guards'];

// ---- stdout carries frames only ---------------------------------------------

const frameOut = process.stdout;
const errOut = process.stderr;
Object.defineProperty(process, 'stdout', { value: process.stderr, configurable: false, writable: false });
const quietConsole = new Console({ stdout: errOut, stderr: errOut });
for (const k of Object.keys(Console.prototype)) {
  if (typeof quietConsole[k] === 'function') globalThis.console[k] = quietConsole[k].bind(quietConsole);
}

function logLine(level, msg) {
  errOut.write(`${level}: ${String(msg).slice(0, 4000).replace(/\n/g, '\\n')}\n`);
}

function send(obj) {
  let line;
  try {
    line = safeStringify(obj);
  } catch (e) {
    line = JSON.stringify({ jsonrpc: '2.0', id: obj.id ?? null, error: { code: -32603, message: 'result is not serialisable: ' + String(e && e.message) } });
  }
  if (line.length > MAX_FRAME) {
    line = JSON.stringify({ jsonrpc: '2.0', id: obj.id ?? null, error: { code: -32000, message: `result is over the ${MAX_FRAME} byte frame limit`, data: { kind: 'too_large' } } });
  }
  frameOut.write(line + '\n');
}

// JSON with bigint as string, repeated or circular objects cut.
function safeStringify(v) {
  const seen = new WeakSet();
  return JSON.stringify(v, (_k, x) => {
    if (typeof x === 'bigint') return x.toString();
    if (x && typeof x === 'object') {
      if (seen.has(x)) return '[Circular]';
      seen.add(x);
    }
    return x;
  });
}

// ---- the environment the plugin sees ----------------------------------------

// process.env becomes one plain object: per-call values are set on it
// without ever touching the OS environment (setenv), and removed after the
// call (a plugin that kept a reference to process.env sees them too).
const baseEnv = { ...process.env };
const pluginEnv = { ...baseEnv };
process.env = pluginEnv;

function setCallEnv(vars) {
  for (const k of Object.keys(pluginEnv)) if (!(k in baseEnv)) delete pluginEnv[k];
  Object.assign(pluginEnv, baseEnv, vars || {});
}

// ---- loading the plugin -------------------------------------------------------

const isTS = (f) => /\.(ts|mts|cts)$/.test(f);

async function loadPlugin(entry) {
  if (!isTS(entry)) return import(pathToFileURL(entry).href);
  return loadTSModule(entry);
}

// TypeScript: Node 20 cannot strip types, and module loader hooks need a
// worker thread (which the permission model forbids). So the plugin's .ts
// modules are stripped with amaro (inside this sandbox) and linked as
// vm.SourceTextModules; everything else is imported natively.
let amaro = null;
let vm = null;
const tsModules = new Map();
const nativeModules = new Map();

async function loadTSModule(entry) {
  if (!TS_RUNTIME) throw new Error(`the plugin entry ${path.basename(entry)} is TypeScript and no TypeScript runtime (amaro) was installed with it`);
  vm = await import('node:vm');
  if (typeof vm.SourceTextModule !== 'function') throw new Error('TypeScript plugins need --experimental-vm-modules');
  amaro = createRequire(path.join(TS_RUNTIME, 'package.json'))(TS_RUNTIME);
  const m = tsModule(entry);
  await m.link(linker);
  await m.evaluate();
  return m.namespace;
}

function tsModule(file) {
  let m = tsModules.get(file);
  if (m) return m;
  const src = fs.readFileSync(file, 'utf8');
  const { code } = amaro.transformSync(src, { mode: 'strip-only' });
  const url = pathToFileURL(file).href;
  m = new vm.SourceTextModule(code, {
    identifier: url,
    initializeImportMeta(meta) {
      meta.url = url;
      meta.filename = file;
      meta.dirname = path.dirname(file);
      meta.resolve = (s) => pathToFileURL(resolveFile(s, file) || s).href;
    },
    importModuleDynamically: async (spec, _ref, attrs) => {
      const dep = await moduleFor(spec, file, attrs);
      if (dep.status === 'unlinked') await dep.link(linker);
      if (dep.status !== 'evaluated') await dep.evaluate();
      return dep;
    },
  });
  tsModules.set(file, m);
  return m;
}

function linker(spec, referencing, extra) {
  return moduleFor(spec, fileURLToPath(referencing.identifier), extra && extra.attributes);
}

function resolveFile(spec, from) {
  if (spec.startsWith('file:')) spec = fileURLToPath(spec);
  if (!(spec.startsWith('.') || spec.startsWith('/'))) return null;
  const p = path.resolve(path.dirname(from), spec);
  const candidates = [p, p + '.ts', p.replace(/\.js$/, '.ts'), p.replace(/\.mjs$/, '.mts'), path.join(p, 'index.ts')];
  for (const c of candidates) {
    if (isTS(c) && fs.existsSync(c)) return c;
  }
  return p;
}

async function moduleFor(spec, from, attributes) {
  const file = resolveFile(spec, from);
  if (file && isTS(file)) return tsModule(file);
  let target;
  if (file) target = pathToFileURL(file).href;
  else if (spec.startsWith('node:') || !spec.includes('/') && createRequire(from).resolve.paths(spec) === null) target = spec;
  else target = pathToFileURL(createRequire(from).resolve(spec)).href;
  let m = nativeModules.get(target);
  if (m) return m;
  const ns = attributes && Object.keys(attributes).length ? await import(target, { with: attributes }) : await import(target);
  const keys = Object.keys(ns);
  m = new vm.SyntheticModule(keys, function () {
    for (const k of keys) this.setExport(k, ns[k]);
  }, { identifier: 'connec-native:' + target });
  nativeModules.set(target, m);
  return m;
}

// ---- the plugin API ------------------------------------------------------------

const unsupported = new Map(); // api path → {accessed, called}

const UNSUPPORTED = Symbol('connec.unsupported');

function unsupportedError(p) {
  const e = new Error(`${p} is not supported by connec's OpenClaw host: it serves tools (api.registerTool) and channel text sends (api.registerChannel) only`);
  e.code = 'ERR_CONNEC_UNSUPPORTED';
  e[UNSUPPORTED] = p;
  return e;
}

function note(p, what) {
  const r = unsupported.get(p) || { accessed: 0, called: 0 };
  r[what]++;
  unsupported.set(p, r);
}

// A callable stand-in for any API member the host does not serve: reading
// it records the access, calling it records the call and throws.
function unsupportedMember(p) {
  note(p, 'accessed');
  const fn = function () {};
  return new Proxy(fn, {
    get(_t, k) {
      if (typeof k === 'symbol' || k === 'then' || k === 'toJSON' || k === 'constructor') return undefined;
      return unsupportedMember(`${p}.${String(k)}`);
    },
    apply() {
      note(p, 'called');
      throw unsupportedError(p);
    },
    construct() {
      note(p, 'called');
      throw unsupportedError(p);
    },
    set() { return false; },
  });
}

let definition = null;
let pluginMeta = {};

function normalizeTools(x) {
  if (!x) return [];
  return Array.isArray(x) ? x.filter(Boolean) : [x];
}

function makeApi(reg, config) {
  const pluginConfig = (config && config.plugin) || {};
  const channels = (config && config.channels) || {};
  const cfg = { channels, plugins: { entries: { [pluginMeta.id]: { enabled: true, config: pluginConfig } } } };
  reg.cfg = cfg;
  const toolCtx = {
    config: cfg,
    runtimeConfig: cfg,
    getRuntimeConfig: () => cfg,
    sandboxed: true,
    assertInvocationCurrent: () => {},
  };
  const logger = {
    debug: (m) => logLine('plugin-debug', m),
    info: (m) => logLine('plugin-info', m),
    warn: (m) => logLine('plugin-warn', m),
    error: (m) => logLine('plugin-error', m),
  };
  const served = {
    id: pluginMeta.id,
    name: pluginMeta.name,
    version: pluginMeta.version,
    description: pluginMeta.description,
    source: ENTRY,
    rootDir: PLUGIN_DIR,
    registrationMode: 'full',
    config: cfg,
    pluginConfig,
    logger,
    resolvePath: (p) => path.resolve(baseEnv.HOME || '/', String(p).replace(/^~(?=$|\/)/, baseEnv.HOME || '/')),
    registerTool(tool, opts) {
      let tools;
      if (typeof tool === 'function') tools = normalizeTools(tool(toolCtx));
      else if (tool && tool.contextVersion === 2 && typeof tool.create === 'function') tools = normalizeTools(tool.create(toolCtx));
      else tools = normalizeTools(tool);
      for (const t of tools) {
        if (!t || typeof t.name !== 'string' || typeof t.execute !== 'function') {
          reg.problems.push('registerTool was given a tool without a name or an execute function');
          continue;
        }
        if (reg.tools.has(t.name)) reg.problems.push(`tool ${t.name} registered twice; the last one wins`);
        reg.tools.set(t.name, t);
      }
      void opts;
    },
    registerChannel(r) {
      const plugin = r && r.plugin ? r.plugin : r;
      if (!plugin || typeof plugin.id !== 'string') {
        reg.problems.push('registerChannel was given a channel without an id');
        return;
      }
      reg.channels.set(plugin.id, plugin);
    },
  };
  return new Proxy(served, {
    get(t, k) {
      if (typeof k === 'symbol' || Object.prototype.hasOwnProperty.call(t, k)) return t[k];
      if (k === 'then' || k === 'toJSON') return undefined;
      return unsupportedMember(`api.${k}`);
    },
    set() { return false; },
  });
}

// register runs the plugin's register(api) with one call's config. The
// registration lives for that call only.
async function register(config) {
  const reg = { tools: new Map(), channels: new Map(), problems: [], cfg: null };
  const api = makeApi(reg, config);
  await definition.register(api);
  return reg;
}

function describeTool(t) {
  return {
    name: t.name,
    label: typeof t.label === 'string' ? t.label : undefined,
    description: typeof t.description === 'string' ? t.description : '',
    parameters: t.parameters && typeof t.parameters === 'object' ? JSON.parse(safeStringify(t.parameters)) : { type: 'object' },
  };
}

function describeChannel(c) {
  const o = c.outbound || {};
  return {
    id: c.id,
    label: (c.meta && typeof c.meta.label === 'string' && c.meta.label) || c.id,
    description: (c.meta && typeof c.meta.blurb === 'string' && c.meta.blurb) || '',
    text: typeof o.sendText === 'function',
    media: typeof o.sendMedia === 'function',
  };
}

function unsupportedList() {
  return [...unsupported.entries()].map(([api, r]) => ({ api, accessed: r.accessed, called: r.called }));
}

// ---- JSON-RPC -----------------------------------------------------------------

class RPCError extends Error {
  constructor(code, message, kind, extra) {
    super(message);
    this.rpc = { code, message, data: { kind, ...(extra || {}) } };
  }
}

function pluginError(e, what) {
  if (e && e.rpc) return e;
  const msg = String((e && e.message) || e).slice(0, 2000);
  if (e && e[UNSUPPORTED]) return new RPCError(-32000, msg, 'unsupported_api', { api: e[UNSUPPORTED] });
  return new RPCError(-32000, `${what}: ${msg}`, what === 'register' ? 'register_failed' : 'plugin_error');
}

const inflight = new Map(); // id → {ac}: the calls in progress
let envOwner = null; // the call whose values process.env holds

// endCallEnv clears process.env's per-call values if call id still owns
// them (a canceled call whose plugin settles late must not clear the next
// call's).
function endCallEnv(id) {
  if (envOwner === id) {
    setCallEnv(null);
    envOwner = null;
  }
}

async function withCall(id, config, fn) {
  const ac = new AbortController();
  inflight.set(id, { ac });
  setCallEnv(config && config.env);
  envOwner = id;
  let reg = null;
  try {
    try {
      reg = await register(config);
    } catch (e) {
      throw pluginError(e, 'register');
    }
    return await fn(reg, ac.signal);
  } finally {
    endCallEnv(id);
    inflight.delete(id);
    if (reg) {
      reg.tools.clear();
      reg.channels.clear();
      reg.cfg = null;
    }
  }
}

const methods = {
  async describe() {
    let registerError;
    let reg = { tools: new Map(), channels: new Map(), problems: [] };
    try {
      reg = await register({ plugin: {}, channels: {} });
    } catch (e) {
      registerError = String((e && e.message) || e).slice(0, 2000);
    }
    return {
      plugin: pluginMeta,
      tools: [...reg.tools.values()].map(describeTool),
      channels: [...reg.channels.values()].map(describeChannel),
      unsupported: unsupportedList(),
      problems: reg.problems,
      register_error: registerError,
    };
  },

  async 'tools/call'(p, id) {
    return withCall(id, p.config, async (reg, signal) => {
      const tool = reg.tools.get(p.tool);
      if (!tool) throw new RPCError(-32004, `the plugin registered no tool ${JSON.stringify(p.tool)} with this configuration`, 'not_registered');
      try {
        return await tool.execute(String(p.tool_call_id || id), p.params || {}, signal, () => {});
      } catch (e) {
        throw pluginError(e, `tool ${p.tool} failed`);
      }
    });
  },

  async 'channel/send'(p, id) {
    return withCall(id, p.config, async (reg, signal) => {
      const ch = reg.channels.get(p.channel);
      if (!ch) throw new RPCError(-32004, `the plugin registered no channel ${JSON.stringify(p.channel)} with this configuration`, 'not_registered');
      const out = ch.outbound || {};
      if (typeof out.sendText !== 'function') throw new RPCError(-32004, `channel ${p.channel} has no outbound sendText`, 'not_registered');
      try {
        return await out.sendText({ cfg: reg.cfg, to: String(p.to), text: String(p.text), accountId: p.account_id || null, signal, silent: false });
      } catch (e) {
        throw pluginError(e, `channel ${p.channel} send failed`);
      }
    });
  },

  async shutdown() {
    setImmediate(() => frameOut.end(() => process.exit(0)));
    return {};
  },
};

async function handle(msg) {
  if (!msg || msg.jsonrpc !== '2.0' || typeof msg.method !== 'string') {
    if (msg && msg.id !== undefined) send({ jsonrpc: '2.0', id: msg.id, error: { code: -32600, message: 'invalid request' } });
    return;
  }
  if (msg.method === '$/cancel') {
    const id = msg.params && msg.params.id;
    const call = inflight.get(id);
    if (call && !cancelled.has(id)) {
      // Answer at once: a plugin that ignores the abort signal must not keep
      // the call open. Its late answer is dropped.
      cancelled.add(id);
      endCallEnv(id);
      call.ac.abort(new Error('cancelled by connec'));
      send({ jsonrpc: '2.0', id, error: { code: -32800, message: 'cancelled', data: { kind: 'cancelled' } } });
    }
    return;
  }
  const fn = methods[msg.method];
  if (!fn) {
    if (msg.id !== undefined) send({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: `no method ${msg.method}` } });
    return;
  }
  try {
    const result = await fn(msg.params || {}, msg.id);
    if (cancelled.delete(msg.id)) return;
    send({ jsonrpc: '2.0', id: msg.id, result: result === undefined ? null : result });
  } catch (e) {
    if (cancelled.delete(msg.id)) return;
    const err = e && e.rpc ? e.rpc : { code: -32603, message: String((e && e.message) || e).slice(0, 2000) };
    send({ jsonrpc: '2.0', id: msg.id, error: err });
  }
}

const cancelled = new Set(); // ids answered "cancelled" whose late answers are dropped

// ---- start ----------------------------------------------------------------------

async function main() {
  if (!PLUGIN_DIR || !ENTRY) {
    send({ jsonrpc: '2.0', method: 'ready', params: { ok: false, error: 'usage: host.mjs --plugin-dir DIR --entry FILE [--proxy SOCKET] [--ts-runtime DIR]' } });
    process.exit(2);
  }
  await installNetwork({ socket: PROXY_SOCKET, guards: GUARDS, who: 'OpenClaw plugins' });
  let ns;
  try {
    ns = await loadPlugin(ENTRY);
  } catch (e) {
    send({ jsonrpc: '2.0', method: 'ready', params: { ok: false, error: 'the plugin failed to load: ' + String((e && e.message) || e).slice(0, 2000) } });
    process.exitCode = 1;
    setImmediate(() => process.exit(1));
    return;
  }
  let def = ns && ns.default !== undefined ? ns.default : ns;
  if (def && def.default && typeof def.register !== 'function' && typeof def !== 'function') def = def.default;
  if (typeof def === 'function') def = { register: def };
  if (!def || typeof def.register !== 'function') {
    send({ jsonrpc: '2.0', method: 'ready', params: { ok: false, error: 'the plugin exports no register(api) function' } });
    setImmediate(() => process.exit(1));
    return;
  }
  definition = def;
  pluginMeta = {
    id: typeof def.id === 'string' ? def.id : undefined,
    name: typeof def.name === 'string' ? def.name : undefined,
    version: typeof def.version === 'string' ? def.version : undefined,
    description: typeof def.description === 'string' ? def.description : undefined,
  };
  if (args['plugin-id'] && !pluginMeta.id) pluginMeta.id = args['plugin-id'];

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      logLine('host-error', 'connec sent a malformed frame');
      return;
    }
    handle(msg);
  });
  rl.on('close', () => process.exit(0));
  send({ jsonrpc: '2.0', method: 'ready', params: { ok: true, host: HOST_VERSION, node: process.version, plugin: pluginMeta, typescript: isTS(ENTRY) } });
}

main().catch((e) => {
  logLine('host-error', (e && e.stack) || e);
  process.exit(1);
});
