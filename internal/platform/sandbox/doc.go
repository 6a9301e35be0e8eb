// Package sandbox runs an untrusted program behind an operating-system
// boundary (Linux). connec uses it for OpenClaw plugin hosts and local MCP
// servers: code written by someone else, which must be assumed to try to
// escape.
//
// Start re-executes the running binary (/proc/self/exe) as a small init,
// in new mount, PID, network, IPC, UTS and cgroup namespaces (and a user
// namespace when connec is not root). The init, before it executes the
// program:
//
//   - mounts a tmpfs as the new root and binds into it only what Spec
//     names (the program and the shared libraries it needs, read-only;
//     the program's inputs read-only and non-executable; device nodes
//     null, zero, random and urandom; writable tmpfs directories with a
//     size cap; state directories that outlive the program, bound
//     writable and, as root, given to the sandbox's uid at every start),
//     then pivot_roots into it, detaches the old root and
//     makes the new root read-only. Nothing else of the machine's file
//     system exists inside: no other file, no /sys, no Unix socket but those
//     bound in, and a /proc of its own PID namespace only (where the
//     kernel lets one be mounted);
//   - sees only its own processes (PID namespace: the program is pid 1)
//     and has a network namespace with no interface up;
//   - drops to an unprivileged uid that is neither connec's nor
//     PostgreSQL's: as root, a dedicated uid per sandbox (setresuid, no
//     capability left); otherwise uid 1000 of a user namespace that maps
//     it to connec's uid, with every capability dropped;
//   - applies Landlock where the kernel has it (reads only inside the new
//     root, writes only in its tmpfs directories, executes only the
//     program and its libraries; no TCP bind or connect; with ABI 6 no
//     abstract Unix sockets and no signals to processes outside the
//     sandbox) and a seccomp filter (no socket families but AF_UNIX, no
//     fork, no namespaces, mounts, ptrace, process_vm_*, keyrings, BPF,
//     perf, userfaultfd, io_uring, SysV shared memory, memfd or shared
//     anonymous mappings, kernel modules, …), with no_new_privs;
//   - sets resource limits the kernel enforces: RLIMIT_DATA (private
//     writable memory: the heap, array buffers and every other anonymous
//     mapping, since shared and memfd mappings are refused), RLIMIT_CPU,
//     RLIMIT_NPROC (threads), RLIMIT_NOFILE, RLIMIT_FSIZE, core dumps off.
//
// It reports any failure of those steps to Start over a pipe, before the
// program runs: a boundary that cannot be set up is an error, never a
// weaker boundary. Available probes the whole sequence once, so callers
// can refuse to run untrusted code (and say why) where the kernel cannot
// give the boundary.
//
// A binary using this package must let the init run: the package's init
// function recognises the re-executed process by its argv[0] and never
// returns to main. Test binaries work the same way.
package sandbox
