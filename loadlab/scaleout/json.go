package scaleout

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// PeakText says, from the USL fitted over replica counts, past which count
// adding replicas lowers capacity.
func (r *Result) PeakText() string {
	if !r.FitOK {
		return ""
	}
	return peakText(r.Fit)
}

func peakText(f usl.Fit) string {
	switch {
	case f.PeakConcurrency == 1 && f.Sigma >= 1:
		return "a second replica already lowers capacity (σ ≥ 1)"
	case f.PeakConcurrency < 1.5:
		return fmt.Sprintf("a second replica already lowers capacity (N* = %.1f)", f.PeakConcurrency)
	case math.IsInf(f.PeakConcurrency, 1):
		return "no replica count past which capacity falls (κ ≈ 0)"
	}
	return fmt.Sprintf("capacity falls past about %.1f replicas", f.PeakConcurrency)
}

func numOrNull(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type jsonStep struct {
	Replicas         int                   `json:"replicas"`
	CPUPerReplica    *float64              `json:"cpu_per_replica"`
	URL              string                `json:"url"`
	CapacityRPS      float64               `json:"capacity_rps"`
	Speedup          float64               `json:"speedup"`
	Efficiency       float64               `json:"efficiency"`
	P99              float64               `json:"p99_ms"`
	Bottleneck       string                `json:"bottleneck"`
	Found            bool                  `json:"found"`
	GeneratorLimited bool                  `json:"generator_limited"`
	Probes           int                   `json:"probes"`
	Warnings         []string              `json:"warnings"`
	Watched          []string              `json:"watched"`
	Processes        []measure.ProcessStep `json:"processes"`
	BaselineMS       float64               `json:"baseline_ms"`
	Remeasured       bool                  `json:"remeasured"`
	MachineLimited   string                `json:"machine_limited,omitempty"`
	RateLimited      string                `json:"rate_limited,omitempty"`
	Swung            string                `json:"swung,omitempty"`
}

func toJSON(s Step) jsonStep {
	out := jsonStep{Replicas: s.Replicas, CPUPerReplica: numOrNull(s.CPU), URL: s.URL, CapacityRPS: s.CapacityRPS,
		Speedup: s.Speedup, Efficiency: s.Efficiency, P99: msOf(s.P99), Bottleneck: s.Bottleneck, Found: s.Found,
		GeneratorLimited: s.GeneratorLimited, Probes: s.Probes, Warnings: s.Warnings, Watched: s.Watched,
		Processes: append([]measure.ProcessStep{}, s.Processes...), BaselineMS: msOf(s.Baseline), Remeasured: s.Remeasured,
		MachineLimited: s.MachineLimited, RateLimited: s.RateLimited, Swung: s.Swung}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	if out.Watched == nil {
		out.Watched = []string{}
	}
	return out
}

// MarshalJSON writes the documented shape: {"slo_ms", "warnings": [...],
// "retrograde": [...], "steps": [...], "vertical": [...], "usl": {...}} with efficiency as a
// fraction.
func (r *Result) MarshalJSON() ([]byte, error) {
	type fit struct {
		Sigma        float64  `json:"sigma"`
		Kappa        float64  `json:"kappa"`
		Lambda       float64  `json:"lambda"`
		R2           float64  `json:"r2"`
		PeakReplicas *float64 `json:"peak_replicas"`
		Text         string   `json:"text"`
	}
	out := struct {
		SLO        float64    `json:"slo_ms"`
		Warnings   []string   `json:"warnings"`
		Retrograde []string   `json:"retrograde"`
		OffCurve   []string   `json:"off_curve"`
		Steps      []jsonStep `json:"steps"`
		Vertical   []jsonStep `json:"vertical"`
		USL        *fit       `json:"usl"`
	}{SLO: msOf(r.SLO), Warnings: append([]string{}, r.Warnings...), Retrograde: append([]string{}, r.Retrograde...),
		OffCurve: append([]string{}, r.OffCurve...),
		Steps:    []jsonStep{}, Vertical: []jsonStep{}}
	for _, s := range r.Steps {
		out.Steps = append(out.Steps, toJSON(s))
	}
	for _, s := range r.Vertical {
		out.Vertical = append(out.Vertical, toJSON(s))
	}
	if r.FitOK {
		out.USL = &fit{r.Fit.Sigma, r.Fit.Kappa, r.Fit.Lambda, r.Fit.R2, numOrNull(r.Fit.PeakConcurrency), r.PeakText()}
	}
	return json.Marshal(out)
}
