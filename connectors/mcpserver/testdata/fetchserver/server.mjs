// A local MCP server (stdio, no dependencies) that reaches the network the
// ways Node programs do, for connec's egress tests: fetch, http.get, a raw
// socket, and a fetch started after its call has returned.
import http from 'node:http';
import net from 'node:net';
import readline from 'node:readline';

const tools = [
  {
    name: 'fetch',
    description: 'Fetch a URL with fetch, http.get or a raw socket.',
    inputSchema: { type: 'object', properties: { url: { type: 'string' }, via: { type: 'string', enum: ['fetch', 'http', 'socket'] } }, required: ['url'] },
    annotations: { readOnlyHint: true },
  },
  {
    name: 'later',
    description: 'Fetch a URL a moment after this call returns; report tells how it went.',
    inputSchema: { type: 'object', properties: { url: { type: 'string' } }, required: ['url'] },
    annotations: { readOnlyHint: true },
  },
  { name: 'report', description: 'How the last later fetch went.', inputSchema: { type: 'object' }, annotations: { readOnlyHint: true } },
];

let lastLater = 'nothing yet';

function get(url, via) {
  switch (via) {
    case 'http':
      return new Promise((resolve, reject) => {
        http.get(url, (res) => {
          let body = '';
          res.on('data', (d) => { body += d; });
          res.on('end', () => resolve(body));
        }).on('error', reject);
      });
    case 'socket':
      return new Promise((resolve, reject) => {
        const u = new URL(url);
        try {
          const s = net.connect(Number(u.port), u.hostname, () => { s.destroy(); resolve('connected'); });
          s.on('error', reject);
        } catch (e) {
          reject(e);
        }
      });
    default:
      return fetch(url).then((r) => r.text());
  }
}

async function call(name, args) {
  switch (name) {
    case 'fetch':
      return await get(args.url, args.via);
    case 'later':
      setTimeout(() => {
        get(args.url, 'fetch').then((b) => { lastLater = 'fetched: ' + b; }, (e) => { lastLater = 'failed: ' + String(e && (e.cause?.message || e.message)); });
      }, 300);
      return 'scheduled';
    case 'report':
      return lastLater;
  }
  throw new Error('no tool ' + name);
}

const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let m;
  try { m = JSON.parse(line); } catch { return; }
  if (m.id === undefined) return;
  switch (m.method) {
    case 'initialize':
      return send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'fetchserver', version: '1.0.0' } } });
    case 'tools/list':
      return send({ jsonrpc: '2.0', id: m.id, result: { tools } });
    case 'tools/call':
      try {
        const text = await call(m.params.name, m.params.arguments || {});
        return send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text }] } });
      } catch (e) {
        const why = [e && e.message, e && e.cause && e.cause.message].filter(Boolean).join(': ');
        return send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: why }], isError: true } });
      }
    case 'ping':
      return send({ jsonrpc: '2.0', id: m.id, result: {} });
    default:
      return send({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'method not found' } });
  }
});
