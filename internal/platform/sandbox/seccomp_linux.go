//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in the sandbox: ways out of the
// namespaces (mount, namespaces, chroot, ptrace and reading or writing
// other processes' memory, handles to files by inode), kernel attack
// surface an untrusted program has no use for (keyrings, BPF, perf,
// userfaultfd, io_uring, modules, kexec), memory that would escape
// RLIMIT_DATA (SysV shared memory, memfd), and system-wide settings.
// Architecture-specific ones are added by archDenied.
var deniedSyscalls = []uintptr{
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
	unix.SYS_PROCESS_MADVISE,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT, unix.SYS_UNSHARE, unix.SYS_SETNS,
	unix.SYS_MOUNT_SETATTR, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
	unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER, unix.SYS_FANOTIFY_INIT,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_REBOOT, unix.SYS_ACCT, unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD,
	unix.SYS_SYSLOG, unix.SYS_VHANGUP, unix.SYS_LOOKUP_DCOOKIE, unix.SYS_NFSSERVCTL,
	unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
	unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME,
	unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_MEMFD_CREATE, unix.SYS_MEMFD_SECRET,
}

// nsFlags are the clone flags that create namespaces.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// BPF opcodes.
const (
	bpfLdAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJge    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfJset   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfAnd    = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	bpfRet    = unix.BPF_RET | unix.BPF_K
	offNr     = 0
	offArch   = 4
	offArgLo0 = 16 // args[i] low 32 bits at 16+8i (little endian)
)

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// asm is a tiny BPF assembler with forward jumps to labels.
type asm struct {
	ins    []unix.SockFilter
	fix    []fixup
	labels map[string]int
}

type fixup struct {
	at     int
	jt, jf string
}

func (a *asm) stmt(code uint16, k uint32) { a.ins = append(a.ins, unix.SockFilter{Code: code, K: k}) }

// jump appends a conditional jump; "" falls through.
func (a *asm) jump(code uint16, k uint32, jt, jf string) {
	a.fix = append(a.fix, fixup{len(a.ins), jt, jf})
	a.ins = append(a.ins, unix.SockFilter{Code: code, K: k})
}

func (a *asm) label(name string) { a.labels[name] = len(a.ins) }

func (a *asm) assemble() ([]unix.SockFilter, error) {
	for _, f := range a.fix {
		for _, x := range []struct {
			name string
			dst  *uint8
		}{{f.jt, &a.ins[f.at].Jt}, {f.jf, &a.ins[f.at].Jf}} {
			if x.name == "" {
				continue
			}
			to, ok := a.labels[x.name]
			if !ok {
				return nil, fmt.Errorf("seccomp: no label %s", x.name)
			}
			off := to - f.at - 1
			if off < 0 || off > 255 {
				return nil, fmt.Errorf("seccomp: jump to %s out of range", x.name)
			}
			*x.dst = uint8(off)
		}
	}
	return a.ins, nil
}

// filter builds the seccomp program.
func filter() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, errors.New("seccomp: no filter for this architecture")
	}
	a := &asm{labels: map[string]int{}}
	a.stmt(bpfLdAbs, offArch)
	a.jump(bpfJeq, auditArch, "", "kill")
	a.stmt(bpfLdAbs, offNr)
	if x32Bit != 0 {
		a.jump(bpfJge, x32Bit, "deny", "")
	}
	a.jump(bpfJeq, unix.SYS_SOCKET, "socket", "")
	a.jump(bpfJeq, unix.SYS_CLONE, "clone", "")
	a.jump(bpfJeq, unix.SYS_CLONE3, "enosys", "")
	a.jump(bpfJeq, unix.SYS_MMAP, "mmap", "")
	a.jump(bpfJeq, unix.SYS_IOCTL, "ioctl", "")
	for _, nr := range append(append([]uintptr(nil), deniedSyscalls...), archDenied...) {
		a.jump(bpfJeq, uint32(nr), "deny", "")
	}
	a.stmt(bpfRet, retAllow)

	// socket(domain, …): only AF_UNIX (the egress proxy's socket).
	a.label("socket")
	a.stmt(bpfLdAbs, offArgLo0)
	a.jump(bpfJeq, unix.AF_UNIX, "allow", "deny")

	// clone(flags, …): threads only; no processes, no namespaces.
	a.label("clone")
	a.stmt(bpfLdAbs, offArgLo0)
	a.jump(bpfJset, nsFlags, "deny", "")
	a.jump(bpfJset, unix.CLONE_THREAD, "allow", "deny")

	// mmap(addr, len, prot, flags, …): no shared anonymous memory (it
	// would escape RLIMIT_DATA).
	a.label("mmap")
	a.stmt(bpfLdAbs, offArgLo0+8*3)
	a.stmt(bpfAnd, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	a.jump(bpfJeq, unix.MAP_SHARED|unix.MAP_ANONYMOUS, "deny", "allow")

	// ioctl(fd, TIOCSTI, …): never push input into a terminal.
	a.label("ioctl")
	a.stmt(bpfLdAbs, offArgLo0+8)
	a.jump(bpfJeq, unix.TIOCSTI, "deny", "allow")

	a.label("allow")
	a.stmt(bpfRet, retAllow)
	a.label("deny")
	a.stmt(bpfRet, retEPERM)
	a.label("enosys")
	a.stmt(bpfRet, retENOSYS)
	a.label("kill")
	a.stmt(bpfRet, retKill)
	return a.assemble()
}

// applySeccomp installs the filter on the calling thread (no_new_privs is
// set): the program it executes inherits it.
func applySeccomp() error {
	prog, err := filter()
	if err != nil {
		return err
	}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fp))); errno != 0 {
		return fmt.Errorf("seccomp(SET_MODE_FILTER): %w", syscall.Errno(errno))
	}
	return nil
}
