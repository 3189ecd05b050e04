package load

import (
	"os"
	"strconv"
	"strings"
)

// MachineCPU reads the whole machine's busy and total CPU time (in clock
// ticks) from /proc/stat; ok is false where that file does not exist.
func MachineCPU() (busy, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	var idle uint64
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v
		if i == 3 || i == 4 { // idle and iowait
			idle += v
		}
	}
	return total - idle, total, true
}
