//go:build !unix

package load

import "time"

// cpuTime is not measured here: the CPU self-check stays silent.
func cpuTime() time.Duration { return 0 }
