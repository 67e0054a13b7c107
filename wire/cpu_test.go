package wire

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU adds cpu-ns/op to a benchmark: the process's CPU time per
// operation (user and system, garbage collection included). On a machine
// shared with other work, ns/op counts the time this benchmark waited for
// a core as well; cpu-ns/op does not.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
