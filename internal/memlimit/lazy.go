package memlimit

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// LazyReturn is the GODEBUG setting under which the Go runtime hands
// memory back to Linux with MADV_FREE instead of MADV_DONTNEED: the kernel
// takes the pages when it needs them, and until then the heap reuses them
// for free. Under a soft memory limit the runtime hands memory back
// whenever the heap nears the limit and takes it again moments later; on
// a virtual machine that reports free pages to its host (virtio-balloon
// free page reporting) every page taken back after MADV_DONTNEED costs a
// host fault. A 2M keyed-record produce under the default limit ran at
// 0.75–0.85M records/s with MADV_FREE against 0.50–0.68M without, with as
// many collections, and a peak RSS of 63–64 MB against 58 MB
// (docs/benchmarks.md, "Memory handed back lazily"). The price is that a
// process's RSS falls only when the kernel takes the pages back, which is
// why Go does not do it by default.
const LazyReturn = "madvdontneed=0"

// lazyEnv returns env with LazyReturn added to GODEBUG, and whether it
// added it: not on other systems than Linux (madvdontneed is Linux's), and
// not when GODEBUG already sets madvdontneed (the operator's choice wins:
// GODEBUG=madvdontneed=1 keeps the runtime's default).
func lazyEnv(goos string, env []string) ([]string, bool) {
	if goos != "linux" {
		return env, false
	}
	out := make([]string, 0, len(env)+1)
	debug := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			debug = v
			continue
		}
		out = append(out, kv)
	}
	for _, s := range strings.Split(debug, ",") {
		if strings.HasPrefix(strings.TrimSpace(s), "madvdontneed=") {
			return env, false
		}
	}
	if debug != "" {
		debug += ","
	}
	return append(out, "GODEBUG="+debug+LazyReturn), true
}

// ExecLazy re-executes the running program with LazyReturn in GODEBUG,
// the same arguments and otherwise the same environment, unless lazyEnv
// says not to; it returns only then, or if the exec fails. The runtime
// reads GODEBUG once, at start, and does not accept this setting from a
// //go:debug line, so only a new start can change it; it must come before
// the program opens anything that should not outlive the exec (Go opens
// files close-on-exec). The process keeps its PID.
func ExecLazy() error {
	env, ok := lazyEnv(runtime.GOOS, os.Environ())
	if !ok {
		return nil
	}
	return syscall.Exec("/proc/self/exe", os.Args, env)
}
