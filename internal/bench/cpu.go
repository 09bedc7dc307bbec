package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTimes is the CPU time consumed so far by this process and by the
// PostgreSQL server on this machine: every process named postgres, plus the
// children its postmaster has reaped (connections that closed). Measured
// across a stage, it gives the CPU seconds per record each side spends,
// which is what the capacity model in docs/scale.md is built from; on
// SQLite the engine runs inside this process.
type cpuTimes struct{ self, postgres time.Duration }

// userHz is Linux's USER_HZ, the unit of /proc's CPU times (100 on every
// architecture Go supports).
const userHz = 100

func cpuNow() cpuTimes {
	var out cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		out.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "postgres" {
			continue
		}
		// After the command: state, then fields 4–; utime, stime, cutime
		// and cstime are fields 14–17.
		f := strings.Fields(s[close+1:])
		if len(f) < 15 {
			continue
		}
		var ticks int64
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
		out.postgres += time.Duration(ticks) * time.Second / userHz
	}
	return out
}

// since is the CPU time spent from b to a.
func (a cpuTimes) since(b cpuTimes) cpuTimes {
	return cpuTimes{self: a.self - b.self, postgres: a.postgres - b.postgres}
}

// perUnit is microseconds of CPU per unit of work, for each side.
func (a cpuTimes) perUnit(units float64) (self, postgres float64) {
	if units <= 0 {
		return 0, 0
	}
	return float64(a.self.Microseconds()) / units, float64(a.postgres.Microseconds()) / units
}
