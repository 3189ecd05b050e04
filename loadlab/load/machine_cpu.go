package load

import "github.com/prometheus/procfs"

// MachineCPU reads the whole machine's busy and total CPU time, in seconds
// summed over its CPUs, from /proc/stat; ok is false where it cannot be
// read.
func MachineCPU() (busy, total float64, ok bool) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, 0, false
	}
	st, err := fs.Stat()
	if err != nil {
		return 0, 0, false
	}
	c := st.CPUTotal
	// Guest time is already counted in user time.
	total = c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	return total - c.Idle - c.Iowait, total, true
}
