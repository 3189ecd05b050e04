package testsystem

import (
	"flag"
	"strconv"
)

// MeasureInParallel raises the test binary's -parallel to n, unless its
// command line set it, for a TestMain to call before m.Run. go test runs
// as many parallel tests at once as the machine has CPUs (two here), but
// the measurements of the test system are held by virtual clocks or CPU
// quotas, not by the machine: two at a time left the rest waiting, and
// loadlab/scaleout's package took 219 s at a load average of 20 to 32, of
// which 177 s were its measurements queued two by two.
func MeasureInParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	f := flag.Lookup("test.parallel")
	if given || f == nil {
		return
	}
	if cur, err := strconv.Atoi(f.Value.String()); err == nil && cur < n {
		f.Value.Set(strconv.Itoa(n)) //nolint:errcheck // a number the flag accepts
	}
}
