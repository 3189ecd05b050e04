package instrument_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/shop/instrument"
	"github.com/perfscale/perfscale/shop/jobs"
)

func TestQueueCollectorExposesTheBacklog(t *testing.T) {
	var fail bool
	c := instrument.NewQueueCollector(func(context.Context) (jobs.Backlog, error) {
		if fail {
			return jobs.Backlog{}, errors.New("database is gone")
		}
		return jobs.Backlog{Waiting: 42, OldestAge: 1500 * time.Millisecond}, nil
	}, time.Second)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP shop_jobs_oldest_waiting_seconds How long the oldest job ready to run has waited for a worker (0 when none waits).
# TYPE shop_jobs_oldest_waiting_seconds gauge
shop_jobs_oldest_waiting_seconds 1.5
# HELP shop_jobs_waiting Background jobs ready to run and not yet taken by a worker.
# TYPE shop_jobs_waiting gauge
shop_jobs_waiting 42
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shop_jobs_waiting", "shop_jobs_oldest_waiting_seconds"); err != nil {
		t.Fatal(err)
	}
	fail = true
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP shop_jobs_backlog_read_errors_total Scrapes at which the job backlog could not be read.
# TYPE shop_jobs_backlog_read_errors_total counter
shop_jobs_backlog_read_errors_total 1
`), "shop_jobs_waiting", "shop_jobs_backlog_read_errors_total"); err != nil {
		t.Fatal(err)
	}
}
