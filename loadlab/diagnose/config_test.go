package diagnose_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
)

// Validate names the field at fault and why; a zero field is wrong there
// (Run fills it in with WithDefaults first), and the defaults are valid.
func TestValidateNamesTheFieldAtFault(t *testing.T) {
	good := diagnose.Config{}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	tests := []struct {
		name   string
		change func(*diagnose.Config)
		field  string
		reason string
	}{
		{"zero SLO", func(c *diagnose.Config) { c.SLO = 0 }, "SLO", "must be positive"},
		{"negative SLO", func(c *diagnose.Config) { c.SLO = -time.Millisecond }, "SLO", "must be positive"},
		{"one user", func(c *diagnose.Config) { c.MaxConcurrency = 1 }, "MaxConcurrency", "at least 2"},
		{"zero step", func(c *diagnose.Config) { c.StepDuration = 0 }, "StepDuration", "must be positive"},
		{"negative baseline duration", func(c *diagnose.Config) { c.BaselineDuration = -time.Second }, "BaselineDuration", "must be positive"},
		{"too few baseline requests", func(c *diagnose.Config) { c.BaselineRequests = diagnose.MinBaselineRequests - 1 }, "BaselineRequests", "to estimate a p99"},
		{"no cores", func(c *diagnose.Config) { c.Cores = -1 }, "Cores", "positive number of cores"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			err := cfg.Validate()
			var bad *diagnose.ConfigError
			if !errors.As(err, &bad) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if bad.Field != tt.field || !strings.Contains(bad.Reason, tt.reason) {
				t.Errorf("got field %q reason %q, want %q and a reason with %q", bad.Field, bad.Reason, tt.field, tt.reason)
			}
		})
	}
	edge := good
	edge.MaxConcurrency, edge.BaselineRequests = 2, diagnose.MinBaselineRequests
	if err := edge.Validate(); err != nil {
		t.Errorf("the smallest ramp and baseline: %v", err)
	}
}

// WithDefaults fills only the zero fields.
func TestWithDefaultsKeepsWhatIsGiven(t *testing.T) {
	got := diagnose.Config{SLO: 40 * time.Millisecond, MaxConcurrency: 8}.WithDefaults()
	if got.SLO != 40*time.Millisecond || got.MaxConcurrency != 8 {
		t.Errorf("given fields changed: %+v", got)
	}
	if got.StepDuration != diagnose.DefaultStepDuration || got.BaselineRequests != diagnose.DefaultBaselineRequests ||
		got.BaselineDuration != diagnose.DefaultBaselineDuration || got.Cores <= 0 {
		t.Errorf("zero fields not defaulted: %+v", got)
	}
}
