package nodejs

import _ "embed"

// EgressModule is egress.mjs: it sends a sandboxed Node program's fetch,
// http and https through connec's egress proxy socket and refuses every
// other way out. The OpenClaw host imports it ("./egress.mjs" beside
// itself); a local MCP server preloads it (node --import) with
// EgressSocketEnv naming the socket.
//
//go:embed egress.mjs
var EgressModule []byte

// EgressSocketEnv is the variable that names the proxy's socket to the
// preloaded module (it removes it from the program's environment).
const EgressSocketEnv = "CONNEC_EGRESS_SOCKET"
