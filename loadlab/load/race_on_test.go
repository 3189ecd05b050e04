//go:build race

package load_test

// raceDetector is true when the tests run under -race, whose
// instrumentation slows the client several times over.
const raceDetector = true
