// Package openclaw turns installed OpenClaw plugins (npm packages with an
// openclaw.plugin.json manifest) into connec connector types, and keeps
// them untrusted: a plugin never runs in connec's process nor in an agent's,
// sees a credential only inside the one call it is made for, reaches the
// network only through connec's egress proxy, and everything it returns is
// bounded, checked and redacted before it leaves.
//
// # Installing
//
// `connec openclaw add <npm-package>@<exact-version>` (Stage, then Commit)
// runs `npm install --ignore-scripts --no-audit --no-fund --save-exact
// --legacy-peer-deps` into a staging directory under
// $CONNEC_DATA_DIR/openclaw/plugins, reads the manifest, has a sandboxed
// host describe what the plugin registers (no credential, no network), and
// shows that for review before moving it in place. The install record
// (connec-plugin.json) pins the package, version, npm integrity, entry,
// manifest and the described tools and channels: the catalog is what the
// operator reviewed, and LoadDrivers refuses a package whose version or
// entry no longer match it. A TypeScript-only package (such as
// @ollama/openclaw-web-search, which publishes index.ts) gets amaro (Node's
// own type stripper, no dependencies) installed next to it; the host strips
// types inside the sandbox.
//
// # Types and operations
//
// Each plugin is one type, "openclaw-<manifest id>" (sanitized, at most 32
// characters). Operations, namespaced by the sanitized plugin id:
//
//	<id>.<tool>             one per registered tool; input schema: the tool's parameters
//	                        (references outside the document refused, $id/$schema dropped);
//	                        output {content: [text|image items], details: {}, redacted?}
//	<id>.<channel>.send     one per registered channel with outbound sendText; input {to, text};
//	                        output {channel, message_id, details, redacted?}
//
// Kinds: a tool is read unless the manifest's toolMetadata marks it
// sideEffecting (then send), and the operator's --send/--read choice at
// install time overrides both; channel sends are always send. read is the
// default because most OpenClaw tools are look-ups and the kind is what
// policy checks; a plugin's own claim can only make a tool stricter
// (send), never laxer than the operator's choice. Every operation's
// timeout is 30 s unless the install record says otherwise (at most 5 min).
//
// # Credentials: how a credential reaches the plugin
//
// The type accepts every credential kind (api_key {key}, bearer {token},
// header {value}, query {value}, basic and login {username, password}) and
// requires none. The instance configuration says where the executor's
// unsealed fields go, for one call only:
//
//	credential_config_path  "apiKey"                  a one-field kind's value at api.pluginConfig.apiKey
//	                        "auth"                    a two-field kind's {username, password} there
//	                        "channels.chat.token"     into the OpenClaw config: cfg.channels.chat.token
//	credential_field_paths  {"password": "auth.pass"} per field, same path rules
//	credential_env          {"OLLAMA_API_KEY": "key"} process.env.OLLAMA_API_KEY, as the plugin sees it
//
// Paths are dotted segments ([A-Za-z_$][A-Za-z0-9_$-]*, at most 8; never
// __proto__, constructor or prototype); "channels.<id>.<key>…" targets the
// OpenClaw config's channels, anything else the plugin's own config (also
// visible as cfg.plugins.entries.<id>.config). Non-secret settings go in
// plugin_config and channel_config. The merged plugin config (credential
// in place) is checked against the manifest's configSchema before the call
// (violations redacted). A credential without a mapping, or a mapping
// without a credential, is refused rather than guessed.
//
// The credential travels in the call's JSON-RPC frame on the host's stdin
// (the buffer is wiped once written). The host registers the plugin anew
// for that call with that configuration and drops the registration
// afterwards; credential_env values are set on a plain-object process.env
// (never setenv, so never in the OS environment) and removed after the
// call. Nothing secret is in the host's environment, argv, files or logs;
// its stderr is logged at debug level only, redacted.
//
// # Processes
//
// One host per connector instance (so a plugin's module-level state never
// mixes two owners' credentials), started on the first call, one call at a
// time, stopped after 10 minutes idle or by Close. The host is node running
// host/host.mjs (embedded, written read-only into a private 0700 state
// directory) with:
//
//   - an empty environment except HOME and TMPDIR (inside the state
//     directory), PATH=/usr/bin:/bin, LANG and TZ;
//   - Node's permission model (--experimental-permission on Node 20,
//     --permission from 22.13/23.5): read only the host program and the
//     plugin's install directory (the package and its dependencies), write
//     only its private home; no child processes, workers, WASI or native
//     addons (--no-addons too);
//   - --max-old-space-size (256 MB by default);
//   - on Linux, new user, network and IPC namespaces: uid 1000 inside
//     (mapped to connec's uid) with no capabilities, and a network namespace
//     with no usable interface; RLIMIT_CORE 0; its own process group,
//     SIGKILLed if connec dies (and it exits when its stdin closes).
//
// A call that overruns its deadline kills the host (a plugin may be stuck
// in a loop); a canceled call is sent $/cancel (the plugin's AbortSignal
// fires, the host answers at once) and the host is killed only if it does
// not answer within a second. The next call starts a new host; after
// repeated failures starts back off (250 ms doubling to 10 s). The frame
// reader bounds a line (4 MiB): an oversized frame (response_too_large), a
// line that is not JSON-RPC (a plugin writing to stdout: permanent,
// reason "protocol") or a crash (unavailable, reason "host_exited") fails
// the call with a clear error and kills the host; no call ever waits on a
// dead host. A dead host is never reported as transient, so the executor
// does not re-run the call by itself: a "read" tool may have had effects.
//
// # Egress
//
// Each host gets an HTTP proxy (CONNECT, and absolute-URI plain HTTP) on a
// Unix socket in its state directory. During a call it admits a
// connection only if the invocation's Egress (connectors/egress: the
// instance's egress_hosts narrowed by the type's, DNS pinned, private
// addresses only with allow_private_network) dials it; between calls it
// refuses everything, and it closes the call's connections when the call
// ends. Every connection is logged (type, instance, host, allowed or not,
// reason). A call that fails after a refusal reports egress_refused with
// the host.
//
// Node 20's fetch ignores HTTP(S)_PROXY. The host therefore replaces
// fetch's global undici dispatcher with a new Agent of the same (built-in)
// class whose connect function opens a CONNECT tunnel through the socket
// (then TLS for https), and sets http.globalAgent and https.globalAgent to
// agents that tunnel the same way. No npm dependency: undici's internal
// copy is reused, so there is no version skew.
//
// What enforces what:
//
//	OS (kernel)     the separate process and address space; the network namespace (Linux, when
//	                namespaces are available): no route anywhere, so even raw sockets or a plugin
//	                that undoes the runtime patches reach nothing but the proxy socket; no
//	                capabilities; the 0700 state directory and socket; core dumps off; kill on timeout
//	Node runtime    file system reads/writes, child processes, workers, addons (permission model,
//	                which Node documents as a seat belt, not a sandbox against malicious code); the
//	                heap cap; routing fetch/http/https through the proxy; refusing direct sockets,
//	                DNS and UDP (patched net.Socket.prototype.connect, dns, dgram)
//	connec (Go)     the allowlist and address checks at the proxy, frame and result bounds, result
//	                shape validation, redaction, timeouts
//
// Node 20's permission model does not restrict the network at all. Where
// user namespaces are unavailable (IsolationAuto warns once and continues;
// IsolationRequire refuses), egress is enforced by the runtime patches
// only, which a determined plugin can undo. The file system is confined by
// the permission model only: the host runs as connec's uid, so run connec
// as a dedicated unprivileged user.
//
// # Results
//
// A result is bounded (1 MiB normalized, 4 MiB per frame), must be a
// {content, details} object whose content holds only text items {type,
// text} and image items {type, data (base64), mimeType image/*} (anything
// else is a validation error naming the offending item), details an object
// (absent means {}); it is rebuilt with only those fields. Credential
// values, and their URL, HTML, JSON and base64 forms, are replaced with
// [REDACTED] in the result and in error messages; a result that needed it
// says "redacted": true and a warning is logged with the instance.
//
// The driver also reports it through Invocation.Findings, so the audit row
// of the call records that credential material was redacted.
//
// # The plugin API served
//
// api.id, name, version, description, source, rootDir, registrationMode
// ("full"), config, pluginConfig, logger (to stderr), resolvePath,
// registerTool (tools, tool factories, contextVersion 2 factories) and
// registerChannel (outbound.sendText). Any other member (registerHook,
// registerCommand, registerService, runtime.*, on, …) is recorded (listed
// by describe and in the install record) and throws a clear Error when
// called. Media sends, inbound channels, services, hooks, commands and
// HTTP routes are not supported.
package openclaw
