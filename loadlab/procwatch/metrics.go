package procwatch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads a Prometheus endpoint's process_cpu_seconds_total and
// in-flight gauges.
func (s *Set) scrape(ctx context.Context, url string) (scraped, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return scraped{}, fmt.Errorf("metrics: %w", err)
	}
	// The text format, which every Prometheus client library serves.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := s.client.Do(req)
	if err != nil {
		return scraped{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return scraped{}, fmt.Errorf("metrics: %s answered %s", url, resp.Status)
	}
	sc, err := parseMetrics(resp.Body)
	if err != nil {
		return sc, err
	}
	if !sc.hasCPU {
		return sc, fmt.Errorf("metrics: no process_cpu_seconds_total sample at %s", url)
	}
	return sc, nil
}

type scraped struct {
	cpu, inFlight       float64
	hasCPU, hasInFlight bool
}

// parseMetrics reads the samples diagnose needs from the Prometheus text
// format: process_cpu_seconds_total and every *in_flight* gauge, summed
// over their series.
func parseMetrics(r io.Reader) (scraped, error) {
	var out scraped
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return out, fmt.Errorf("metrics: %w", err)
	}
	for name, mf := range families {
		switch {
		case name == "process_cpu_seconds_total":
			for _, m := range mf.GetMetric() {
				out.cpu += sampleValue(m)
				out.hasCPU = true
			}
		case strings.Contains(name, "in_flight"):
			for _, m := range mf.GetMetric() {
				out.inFlight += sampleValue(m)
				out.hasInFlight = true
			}
		}
	}
	return out, nil
}

// sampleValue is the value of a counter, gauge or untyped sample.
func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}
