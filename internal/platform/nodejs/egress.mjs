// connec's egress for sandboxed Node programs (OpenClaw plugin hosts, local
// MCP servers): every connection goes through connec's egress proxy, an HTTP
// CONNECT proxy on a Unix socket bound into the sandbox, which admits only
// the instance's declared hosts, and only during a call.
//
// Node's fetch (undici) and http/https ignore HTTP(S)_PROXY, so this
// replaces fetch's global undici dispatcher with a new Agent of the same
// (built-in) class whose connect function opens a CONNECT tunnel through the
// socket (then TLS for https), and http.globalAgent and https.globalAgent
// with agents that tunnel the same way. With guards on, it refuses direct
// net connections, UDP and DNS with a clear error. These are conveniences
// and a second line: the kernel already refuses every socket but a Unix
// one, and the sandbox holds no Unix socket but the proxy's.
//
// Used two ways: imported by the OpenClaw host, which calls installNetwork;
// and preloaded (node --import) into a local MCP server, where it installs
// itself when CONNEC_EGRESS_SOCKET names the socket.

import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import dns from 'node:dns';
import dgram from 'node:dgram';
import { syncBuiltinESMExports } from 'node:module';

const origConnect = net.Socket.prototype.connect;
// Bound before any untrusted code runs: code that swaps
// Function.prototype.call or Reflect.apply must not capture origConnect
// through the calls below.
const ReflectApply = Reflect.apply;

let PROXY_SOCKET = '';
let WHO = 'this program';

class NetworkBlocked extends Error {
  constructor(what) {
    super(`${what} is not available to ${WHO} under connec: connections go through connec's egress proxy (use fetch, http or https)`);
    this.code = 'ERR_CONNEC_EGRESS';
  }
}

// tunnel opens a CONNECT tunnel to host:port through the proxy.
function tunnel(host, port, signal) {
  return new Promise((resolve, reject) => {
    if (!PROXY_SOCKET) return reject(new NetworkBlocked('the network'));
    const h = String(host).replace(/^\[|\]$/g, '');
    const authority = (net.isIPv6(h) ? `[${h}]` : h) + ':' + Number(port);
    const sock = new net.Socket();
    let buf = Buffer.alloc(0);
    const fail = (e) => { sock.destroy(); reject(e); };
    const onAbort = () => fail(new Error('aborted'));
    if (signal) {
      if (signal.aborted) return reject(new Error('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
    }
    sock.once('error', fail);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > 16384) fail(new Error('egress proxy sent an oversized response'));
        return;
      }
      sock.removeListener('data', onData);
      sock.removeListener('error', fail);
      if (signal) signal.removeEventListener('abort', onAbort);
      const head = buf.subarray(0, end).toString('latin1');
      const status = Number(head.split(' ')[1]);
      if (status !== 200) {
        const reason = /X-Connec-Egress:\s*([^\r\n]*)/i.exec(head);
        sock.destroy();
        const e = new Error(`connec egress refused ${authority}: ${reason ? reason[1] : head.split('\r\n')[0]}`);
        e.code = 'ERR_CONNEC_EGRESS_REFUSED';
        return reject(e);
      }
      const rest = buf.subarray(end + 4);
      if (rest.length) sock.unshift(rest);
      resolve(sock);
    };
    sock.on('data', onData);
    ReflectApply(origConnect, sock, [{ path: PROXY_SOCKET }, () => {
      sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    }]);
  });
}

const tlsKeys = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'checkServerIdentity', 'minVersion', 'maxVersion', 'ciphers', 'ecdhCurve', 'secureContext', 'session'];

function wrapTLS(sock, options, host, alpn) {
  const o = { socket: sock };
  for (const k of tlsKeys) if (options && options[k] !== undefined) o[k] = options[k];
  const h = String(host).replace(/^\[|\]$/g, '');
  o.servername = (options && options.servername) || (net.isIP(h) ? undefined : h);
  if (alpn) o.ALPNProtocols = alpn;
  return tls.connect(o);
}

class TunnelHttpAgent extends http.Agent {
  createConnection(options, cb) {
    tunnel(options.host || options.hostname || 'localhost', options.port || 80).then((s) => cb(null, s), cb);
  }
}
class TunnelHttpsAgent extends https.Agent {
  createConnection(options, cb) {
    const host = options.host || options.hostname || 'localhost';
    tunnel(host, options.port || 443).then((s) => cb(null, wrapTLS(s, options, host)), cb);
  }
}

// installNetwork sends fetch, http and https through the proxy at socket
// ('' refuses every connection); guards refuses everything else that opens
// sockets; who names the program in errors ("OpenClaw plugins").
export async function installNetwork({ socket, guards, who }) {
  PROXY_SOCKET = socket || '';
  WHO = who || WHO;
  http.globalAgent = new TunnelHttpAgent();
  https.globalAgent = new TunnelHttpsAgent();

  // fetch: Node's fetch (undici) ignores HTTP(S)_PROXY. Its global
  // dispatcher is an undici Agent; a new Agent of the same class with a
  // connect function that tunnels replaces it, so fetch keeps its own
  // undici (no version skew, no dependency).
  const sym = Symbol.for('undici.globalDispatcher.1');
  try {
    await fetch('data:,');
  } catch { /* only to load undici */ }
  const current = globalThis[sym];
  if (current && typeof current.constructor === 'function') {
    const Agent = current.constructor;
    globalThis[sym] = new Agent({
      connect(opts, cb) {
        const https_ = opts.protocol === 'https:';
        const port = opts.port || (https_ ? 443 : 80);
        tunnel(opts.hostname, port).then((s) => {
          if (!https_) return cb(null, s);
          const t = wrapTLS(s, { servername: opts.servername }, opts.hostname, ['http/1.1']);
          t.once('secureConnect', () => cb(null, t));
          t.once('error', (e) => cb(e));
        }, (e) => cb(e));
      },
    });
  } else {
    // Fail closed: without the dispatcher fetch could go around the proxy.
    globalThis.fetch = () => Promise.reject(new NetworkBlocked('fetch'));
  }

  if (!guards) return;
  net.Socket.prototype.connect = function () { throw new NetworkBlocked('a direct socket connection'); };
  dgram.createSocket = () => { throw new NetworkBlocked('UDP'); };
  dgram.Socket = function Socket() { throw new NetworkBlocked('UDP'); };
  const noDNS = () => { throw new NetworkBlocked('DNS'); };
  for (const k of ['lookup', 'lookupService', 'resolve', 'resolve4', 'resolve6', 'resolveAny', 'resolveCname', 'resolveMx', 'resolveNs', 'resolveTxt', 'resolveSrv', 'resolvePtr', 'resolveNaptr', 'resolveSoa', 'reverse']) {
    if (typeof dns[k] === 'function') dns[k] = noDNS;
    if (dns.promises && typeof dns.promises[k] === 'function') dns.promises[k] = noDNS;
  }
  dns.Resolver = function Resolver() { throw new NetworkBlocked('DNS'); };
  if (dns.promises) dns.promises.Resolver = dns.Resolver;
  syncBuiltinESMExports();
}

// Preloaded into a local MCP server (node --import): install at once.
if (process.env.CONNEC_EGRESS_SOCKET) {
  const socket = process.env.CONNEC_EGRESS_SOCKET;
  delete process.env.CONNEC_EGRESS_SOCKET;
  await installNetwork({ socket, guards: true, who: 'local MCP servers' });
}
