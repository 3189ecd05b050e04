package prometheus_test

import (
	"os"
	"testing"

	"github.com/perfscale/perfscale/deploy/internal/shopbin"
)

// TestMain removes the shop binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	shopbin.Cleanup()
	os.Exit(code)
}
