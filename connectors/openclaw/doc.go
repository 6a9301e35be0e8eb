// Package openclaw turns installed OpenClaw plugins (npm packages with an
// openclaw.plugin.json manifest) into connec connector types, and keeps
// them untrusted: a plugin is code written by someone else that must be
// assumed to try to escape. It never runs in connec's process nor in an
// agent's; it runs behind an operating-system boundary (internal/platform/sandbox),
// in a process of its own for each call, sees a credential only inside the
// call it is made for, reaches the network only through connec's egress
// proxy, and everything it returns is bounded, checked and redacted before
// it leaves. Where the machine cannot give the boundary, plugins do not run
// at all.
//
// # Installing
//
// `connec openclaw add <npm-package>@<exact-version>` (Stage, then Commit)
// first checks that this machine can sandbox plugins (and refuses, saying
// why, before downloading anything if it cannot), then runs `npm install
// --ignore-scripts --no-audit --no-fund --save-exact --legacy-peer-deps`
// (--registry to use another registry) into a staging directory under
// $CONNEC_DATA_DIR/openclaw/plugins, makes the files readable by every uid
// (hosts run as a uid of their own), reads the manifest, has a host in the
// same sandbox as calls describe what the plugin registers (its register()
// runs there, with no credential and no network), and shows that for
// review before moving it in place. The install record
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
// (the buffer is wiped once written). The host registers the plugin for
// that call with that configuration; credential_env values are set on a
// plain-object process.env (never setenv, so never in the OS environment).
// Nothing secret is in the host's environment, argv, files or logs; its
// stderr is logged redacted and rate-limited. What "only inside the one
// call" means: the host is a process of its own for that call and is
// killed (SIGKILL) as soon as the call has answered, so a timer, a hook or
// a global the plugin used to keep the credential dies with it; its home
// is a tmpfs in its own mount namespace, gone with it. The next call runs
// in a host that never saw the previous one.
//
// # Processes
//
// Each call runs in a host of its own: node running host/host.mjs
// (embedded) in a sandbox (internal/platform/sandbox), killed when the call has
// answered. So that calls do not wait for node to start and load the
// plugin (about a tenth of a second, more for large or TypeScript
// plugins), the next call's host is started ahead after each call and
// stopped (SIGSTOP) as soon as it is ready: it has never had a call or a
// credential and uses no CPU until the call that takes it continues it;
// one nobody takes is killed after 10 minutes (WithIdleTimeout). Calls of
// one instance run one at a time.
//
// The sandbox, which the kernel enforces:
//
//   - its own mount namespace whose root is a read-only tmpfs holding only
//     node and the shared libraries it loads (read-only), the host program
//     (/connec/host.mjs), the plugin's install directory (/plugin,
//     read-only, noexec), the egress proxy's socket (/connec/egress.sock),
//     /dev/null, zero, random and urandom, a /proc of its own PID
//     namespace, and a writable tmpfs home (/home, 64 MiB, noexec): no other
//     file of the machine, and no other Unix socket, exists there;
//   - its own PID namespace (node is pid 1 and sees and signals no other
//     process), network namespace (no interface up), IPC, UTS and cgroup
//     namespaces;
//   - a uid that is neither connec's nor PostgreSQL's: as root, one of
//     its own per host (from 2,100,000,000 up, no account has them); as
//     a dedicated unprivileged user (recommended), uid 1000 of a user
//     namespace mapped to connec's uid; no capability either way, and
//     no_new_privs;
//   - Landlock where the kernel has it (ABI 7 on the machines connec is
//     tested on): reads only inside the new root, writes only in the home,
//     execution of node and its libraries only, no TCP bind or connect, no
//     abstract Unix sockets or signals beyond the sandbox;
//   - seccomp: socket() only for AF_UNIX; no fork (threads only), no
//     unshare/setns/mount/pivot_root/chroot, ptrace, process_vm_*,
//     pidfd_getfd, keyrings, bpf, perf, userfaultfd, io_uring, fanotify,
//     open_by_handle_at, SysV shared memory, memfd or shared anonymous
//     mappings (which would escape RLIMIT_DATA), modules, kexec, clock or
//     host name changes, TIOCSTI;
//   - resource limits: RLIMIT_DATA 768 MiB (WithMemoryMB: the V8 heap,
//     capped at 256 MiB by --max-old-space-size, array buffers, thread
//     stacks), RLIMIT_CPU the call's time limit plus 10 s (WithCPULimit;
//     the kernel kills it there), RLIMIT_NPROC 128 threads, 1024 open
//     files, RLIMIT_FSIZE and the home's size 64 MiB (WithStateMB), no core
//     dumps; SIGKILL when connec dies, and it exits when its stdin closes.
//
// Isolation is required: where the kernel cannot give that boundary
// (unprivileged user namespaces disabled and connec not root, a container
// that forbids namespaces, an architecture without a seccomp filter here),
// installing a plugin fails with the reason, calls fail with unavailable
// (reason "sandbox_unavailable"), /readyz is not ready (check
// openclaw_sandbox, naming the reason) and connec logs it at start. There
// is no opt-out.
//
// Inside that, a second line the runtime enforces: Node's permission model
// (--experimental-permission on Node 20, --permission from 22.13/23.5:
// read only the host program and the plugin's install directory, write
// only the home; no child processes, workers, WASI or native addons,
// --no-addons too), --max-old-space-size, an environment of HOME, TMPDIR,
// PATH, LANG and TZ only, and the host's network patches (below).
//
// A call that overruns its deadline kills the host (a plugin may be stuck
// in a loop); a canceled call is sent $/cancel (the plugin's AbortSignal
// fires, the host answers at once) and the host is killed after that. A
// host that fails to start, dies during its call or is killed for it
// (timeout, oversized or non-JSON-RPC output, a kernel limit) is logged at
// warn with how it ended ("killed by SIGKILL: it used up its CPU time
// limit", …), counted (connec_openclaw_host_failures_total{type,reason})
// and recorded for the instance: after repeated failures its starts back
// off (250 ms doubling to 10 s), and from the third in a row the instance
// is crash-looping: logged at error, counted
// (connec_openclaw_instances_crash_looping{type}), a warning in /readyz
// (by type, no instance id: /readyz needs no token) and on the instance in
// the web UI, until a call succeeds. The frame reader bounds a line
// (4 MiB): an oversized frame (response_too_large), a line that is not
// JSON-RPC (a plugin writing to stdout: permanent, reason "protocol") or a
// crash (unavailable, reason "host_exited") fails the call with a clear
// error; no call ever waits on a dead host. A dead host is never reported
// as transient, so the executor does not re-run the call by itself: a
// "read" tool may have had effects. The state directory connec keeps per
// host (the egress socket, the host program, the root's mount point, never
// anything a plugin writes) is removed when the host ends, and what a
// connec process that died left behind is removed when plugins next load.
//
// # Egress
//
// Each host gets an HTTP proxy (CONNECT, and absolute-URI plain HTTP) on a
// Unix socket, bound into its sandbox as its only way out. During a call
// it admits a connection only if the invocation's Egress
// (connectors/egress: the instance's egress_hosts narrowed by the type's,
// DNS pinned, private addresses only with allow_private_network) dials it;
// between calls and during the install review it refuses everything, and
// it closes the call's connections when the call ends. Every connection is
// logged (type, instance, host, allowed or not, reason). A call that fails
// after a refusal reports egress_refused with the host.
//
// Node 20's fetch ignores HTTP(S)_PROXY. The host therefore (through
// internal/platform/nodejs's egress.mjs, which local MCP servers preload
// too, mounted beside it at /connec/egress.mjs) replaces
// fetch's global undici dispatcher with a new Agent of the same (built-in)
// class whose connect function opens a CONNECT tunnel through the socket
// (then TLS for https), and sets http.globalAgent and https.globalAgent to
// agents that tunnel the same way; it refuses net connections, UDP and DNS
// (net.Socket.prototype.connect, dgram, dns and their Resolver and Socket
// classes) with a clear error. These are conveniences and a second line:
// the kernel already refuses every socket but a Unix one, and the sandbox
// has no Unix socket but the proxy's.
//
// # What the OS enforces, what the runtime enforces
//
// As measured by the hostile-plugin suite (TestHostilePluginCannotEscape,
// run as root and again as an unprivileged user,
// TestHostilePluginCannotEscapeUnprivilegedConnec): a plugin installed
// through the real install path (a loopback npm registry, Stage) attacks
// from its register() during the install review and from a tool during
// calls, once with Node's permission model and the host's patches off (the
// OS boundary alone) and once as connec runs it. With the OS alone, every
// attempt fails with the kernel's error:
//
//	PostgreSQL's socket, a root-only socket,   ENOENT: not in the sandbox's file system
//	another host's egress socket
//	an abstract Unix socket                    ECONNREFUSED: not in its network namespace
//	TCP to loopback or another address, UDP    EPERM: seccomp (Landlock and the empty network
//	                                           namespace would refuse too)
//	DNS (getaddrinfo, dns.Resolver)            EAI_AGAIN / ECONNREFUSED: no socket for them
//	another process's /proc, any pid in /proc  ENOENT: its own PID namespace
//	kill(connec), kill(-1)                     ESRCH: its own PID namespace
//	read a file outside (the credential key)   ENOENT; require.resolve() of it: MODULE_NOT_FOUND,
//	                                           as for a file that does not exist (no oracle)
//	write outside, to /, to its own package    ENOENT / EROFS
//	spawn a process                            EPERM: seccomp (no fork)
//	allocate 1.5 GiB of buffers                stopped near 672 MiB (RLIMIT_DATA 768 MiB)
//	spin                                       killed at its CPU limit (RLIMIT_CPU)
//	fill its home                              ENOSPC at 64 MiB (its tmpfs)
//	keep a credential for the next call        the next call's host never had it; nothing on disk
//	burn CPU after its call                    its host is killed when the call answers
//
// and nothing it aimed at noticed it (no connection, datagram, file or
// program run). internal/platform/sandbox TestTheKernelEnforcesTheBoundary checks
// each mechanism with a program that is not Node. As connec runs it, Node
// refuses most of the same attempts first (ERR_ACCESS_DENIED,
// ERR_CONNEC_EGRESS): the runtime is the first thing a plugin meets, not
// what holds. Still enforced by connec (Go), not the OS: the allowlist and
// address checks at the proxy, frame and result bounds, result shape
// validation, redaction, time limits, the stderr rate (200 lines, then 20
// a second; the rest dropped and counted).
//
// No scan of what a plugin returns can stop a plugin that was given a
// credential from sending it where its allowed egress goes, encoded as it
// likes; the boundary keeps such channels few: no storage that outlives a
// call, egress only to the hosts the instance declares, no other socket.
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
