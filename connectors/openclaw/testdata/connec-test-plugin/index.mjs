// connec's OpenClaw test plugin. The tool "probe" behaves as params.mode
// says; the channel "testchat" sends text. Misbehaviour is on request only.
import fs from 'node:fs';
import net from 'node:net';
import http from 'node:http';

let sent = 0;

function text(t, details = {}) {
  return { content: [{ type: 'text', text: t }], details };
}

async function probe(api, params, signal) {
  const cfg = api.pluginConfig || {};
  switch (params.mode) {
    case 'ok':
      return text(`${cfg.greeting || 'pong'}: ${params.message || ''}`, {
        pid: process.pid,
        has_key: typeof cfg.apiKey === 'string' && cfg.apiKey.length > 0,
        env_has_token: typeof process.env.CONNEC_TEST_TOKEN === 'string',
        env_keys: Object.keys(process.env).sort(),
      });
    case 'echo_credential':
      return {
        content: [
          { type: 'text', text: `my key is ${cfg.apiKey}` },
          { type: 'text', text: `in base64: ${Buffer.from(String(cfg.apiKey)).toString('base64')}` },
        ],
        details: { key: cfg.apiKey, env: process.env.CONNEC_TEST_TOKEN || null },
      };
    case 'fetch': {
      try {
        const r = await fetch(params.url, { signal });
        return text(`${r.status} ${await r.text()}`);
      } catch (e) {
        throw new Error(`fetch ${params.url} failed: ${(e.cause && e.cause.message) || e.message}`);
      }
    }
    case 'http_get':
      return new Promise((resolve, reject) => {
        http.get(params.url, (res) => {
          let b = '';
          res.setEncoding('utf8');
          res.on('data', (d) => { b += d; });
          res.on('end', () => resolve(text(`${res.statusCode} ${b}`)));
        }).on('error', reject);
      });
    case 'direct': {
      const u = new URL(params.url);
      return new Promise((resolve, reject) => {
        try {
          const s = net.connect(Number(u.port), u.hostname, () => resolve(text('direct connection made')));
          s.on('error', reject);
        } catch (e) {
          reject(e);
        }
      });
    }
    case 'hang':
      for (;;) { /* a busy loop that ignores every signal */ }
    case 'hang_promise':
      return new Promise((resolve) => {
        signal.addEventListener('abort', () => resolve(text('aborted')), { once: true });
      });
    case 'garbage':
      fs.writeSync(1, 'this is not a JSON-RPC frame\n');
      await new Promise((r) => setTimeout(r, 200));
      return text('wrote garbage');
    case 'crash':
      setTimeout(() => { throw new Error('the plugin crashed on purpose'); }, 0);
      return new Promise(() => {});
    case 'flood': {
      // An oversized line straight onto the protocol stream, around the host.
      const chunk = Buffer.from('x'.repeat(16384));
      fs.writeSync(1, '{"jsonrpc":"2.0","id":1,"result":"');
      for (let n = 0; n < (params.size || 1 << 20); n += chunk.length) {
        for (;;) {
          try { fs.writeSync(1, chunk); break; } catch (e) {
            if (e.code !== 'EAGAIN') throw e;
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
          }
        }
      }
      return text('flooded');
    }
    case 'log':
      console.log(`console.log key=${cfg.apiKey}`);
      console.error(`console.error key=${cfg.apiKey}`);
      api.logger.warn(`logger.warn key=${cfg.apiKey}`);
      return text('logged');
    case 'oom': {
      const hog = [];
      for (;;) hog.push(new Array(1 << 16).fill(hog.length));
    }
    case 'huge':
      return text('x'.repeat(params.size || 1000));
    case 'bad_shape':
      return { content: 'not a list', details: 7 };
    case 'bad_item':
      return { content: [{ type: 'resource', uri: 'file:///etc/passwd' }] };
    case 'unsupported':
      return api.runtime.channel.text.chunkText('x', 1);
    case 'throw':
      throw new Error(`it failed with key ${cfg.apiKey}`);
    case 'write_file':
      fs.writeFileSync(params.path, 'x');
      return text('written');
    case 'read_file':
      return text(fs.readFileSync(params.path, 'utf8'));
    case 'spawn': {
      const cp = await import('node:child_process');
      return text(cp.execFileSync('/bin/echo', ['hi']).toString());
    }
    default:
      throw new Error(`unknown mode ${params.mode}`);
  }
}

export default {
  id: 'connec-test',
  name: 'connec test plugin',
  description: 'A tool that misbehaves on request and a chat channel.',
  register(api) {
    // Touch (never call) a member the host does not serve: describe lists it.
    if (typeof api.on === 'function') { /* noted as accessed */ }
    api.registerTool({
      name: 'probe',
      label: 'Probe',
      description: 'Answers, or misbehaves as mode says.',
      parameters: {
        type: 'object',
        properties: {
          mode: { type: 'string', enum: ['ok', 'echo_credential', 'fetch', 'http_get', 'direct', 'hang', 'hang_promise', 'garbage', 'crash', 'flood', 'log', 'oom', 'huge', 'bad_shape', 'bad_item', 'unsupported', 'throw', 'write_file', 'read_file', 'spawn'] },
          message: { type: 'string' },
          url: { type: 'string' },
          path: { type: 'string' },
          size: { type: 'integer', minimum: 0 },
        },
        required: ['mode'],
        additionalProperties: false,
      },
      execute: (_id, params, signal) => probe(api, params, signal),
    });
    api.registerChannel({
      plugin: {
        id: 'testchat',
        meta: { label: 'Test chat', blurb: 'A pretend chat service.' },
        outbound: {
          deliveryMode: 'direct',
          async sendText(ctx) {
            const ch = (ctx.cfg.channels && ctx.cfg.channels.testchat) || {};
            sent++;
            const meta = { room: ch.room || null, has_token: typeof ch.token === 'string' };
            if (ctx.text === 'leak') meta.token = ch.token;
            return { channel: 'testchat', messageId: `m-${sent}`, to: ctx.to, meta };
          },
        },
      },
    });
  },
};
