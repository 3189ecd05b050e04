package diagnose

import (
	"encoding/json"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// Kinds of scalability problem.
const (
	KindNone       = "none"
	KindCapacity   = "capacity"   // saturated on CPU: scale out
	KindContention = "contention" // a serial section: throughput plateaus
	KindCoherency  = "coherency"  // crosstalk: throughput falls past a peak
	// KindErrors: requests fail as users are added (refused, rate-limited,
	// timed out) while the successful ones stay fast: errors, not
	// latency, bound the capacity.
	KindErrors = "errors"
	// KindMachineBound: no verdict on the target's scalability. At the
	// ramp's peak or top the machine, not the target, held the server
	// back (measure.Starved: the CPUs busy, the server's processes
	// waiting for a CPU longer than they ran): the curve is the machine's
	// load, and any kind read from it would be a guess.
	KindMachineBound = "machine-bound"
	// KindTail: the p99 climbs above the SLO as users are added while
	// throughput still grows in proportion (at least half of linear): a
	// few requests wait, most do not queue, and the ramp has not reached
	// a plateau (a short ramp, or stalls that hit some requests).
	KindTail = "tail-latency"
)

// Report is a diagnosis: the measurements, the fit and the verdicts.
type Report struct {
	Target   string
	SLO      time.Duration
	Baseline Step
	Steps    []Step
	Fit      usl.Fit
	FitOK    bool
	// CapacityRPS is the highest goodput of the ramp (successful answers
	// a second), reached with CapacityAt users.
	CapacityRPS      float64
	CapacityAt       int
	Efficiency       []float64 // per step, X(N)/(N·X(1))
	Performance      bool      // slow even for one user
	Scalability      bool      // slows down as users are added
	Kind             string
	Evidence         []string // why, in words a person can act on
	Warnings         []string // what may make the numbers less trustworthy
	SaturationSource string   // "pid", "metrics", "prometheus URL" or "none"
	// Bottleneck is the CPU-bound process group at the plateau, nil when
	// none is (or none was seen).
	Bottleneck *Load
	// Generator is the generator's own part in the figures, judged once
	// for the run; when saturated, its Text is among the warnings.
	Generator GeneratorCheck
	// Watched describes each watched group of processes and why.
	Watched []string
	// BaselineHeldBack: no performance verdict (Performance is false),
	// the single user's p99 was above the SLO while the machine held the
	// baseline back (the evidence says how).
	BaselineHeldBack bool
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// numOrNull keeps NaN and infinities, which JSON cannot hold, out of it.
func numOrNull(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// The documented JSON shape of a report (MarshalJSON).
type jsonPerf struct {
	Problem          bool    `json:"problem"`
	BaselineP50      float64 `json:"baseline_p50_ms"`
	BaselineP99      float64 `json:"baseline_p99_ms"`
	BaselineRequests int64   `json:"baseline_requests"`
	SLO              float64 `json:"slo_ms"`
	// MachineBound: no verdict (problem is false), the machine held
	// the baseline back.
	MachineBound bool `json:"machine_bound"`
}
type jsonScalability struct {
	Problem bool   `json:"problem"`
	Kind    string `json:"kind"`
}
type jsonFit struct {
	Sigma           float64  `json:"sigma"`
	Kappa           float64  `json:"kappa"`
	Lambda          float64  `json:"lambda"`
	PeakConcurrency *float64 `json:"peak_concurrency"`
	R2              float64  `json:"r2"`
}
type jsonBottleneck struct {
	Name      string   `json:"name"`
	Members   int      `json:"members"`
	CPUCores  float64  `json:"cpu_cores"`
	Available float64  `json:"available_cores"`
	Quota     *float64 `json:"quota_cores"`
	Text      string   `json:"text"`
}
type jsonStep struct {
	Concurrency        int              `json:"concurrency"`
	ThroughputRPS      float64          `json:"throughput_rps"`
	AnsweredRPS        float64          `json:"answered_rps"`
	P50                float64          `json:"p50_ms"`
	P99                float64          `json:"p99_ms"`
	Errors             int64            `json:"errors"`
	ErrorShare         float64          `json:"error_share"`
	ErrorKinds         load.ErrorCounts `json:"error_kinds"`
	Requests           int64            `json:"requests"`
	Efficiency         float64          `json:"efficiency"`
	ServerCPUCores     *float64         `json:"server_cpu_cores"`
	ServerCPUWaitCores *float64         `json:"server_cpu_wait_cores"`
	ServerCPUPreempted *float64         `json:"server_cpu_wait_preempted_cores"`
	ServerInFlight     *float64         `json:"server_in_flight"`
	JobsWaiting        *float64         `json:"jobs_waiting"`
	DBPoolWaiting      *float64         `json:"db_pool_waiting"`
	GeneratorCPUCores  float64          `json:"generator_cpu_cores"`
	GeneratorSaturated bool             `json:"generator_saturated"`
	GeneratorCPUWait   *float64         `json:"generator_cpu_wait_cores"`
	Processes          []ProcessStep    `json:"processes"`
	// Endpoints: each endpoint's requests, errors and latency in the
	// step (a scenario's steps; one for a URL), as loadlab run gives them.
	Endpoints []load.Endpoint `json:"endpoints"`
}
type jsonGenerator struct {
	Saturated     bool    `json:"saturated"`
	Concurrencies []int   `json:"concurrencies"`
	MaxCPUCores   float64 `json:"max_cpu_cores"`
	MaxDelay      float64 `json:"max_cpu_wait_per_request_ms"`
	Text          string  `json:"text"`
}

type jsonReport struct {
	Target           string          `json:"target"`
	Generator        jsonGenerator   `json:"generator"`
	CapacityRPS      float64         `json:"capacity_rps"`
	CapacityAt       int             `json:"capacity_concurrency"`
	Performance      jsonPerf        `json:"performance"`
	Scalability      jsonScalability `json:"scalability"`
	USL              *jsonFit        `json:"usl"`
	Steps            []jsonStep      `json:"steps"`
	Evidence         []string        `json:"evidence"`
	Warnings         []string        `json:"warnings"`
	SaturationSource string          `json:"saturation_source"`
	Watched          []string        `json:"watched"`
	Bottleneck       *jsonBottleneck `json:"bottleneck"`
}

// MarshalJSON writes the report in the documented shape.
func (r *Report) MarshalJSON() ([]byte, error) {
	out := jsonReport{
		Target:      r.Target,
		CapacityRPS: r.CapacityRPS,
		CapacityAt:  r.CapacityAt,
		Generator: jsonGenerator{r.Generator.Saturated, append([]int{}, r.Generator.Concurrencies...), r.Generator.MaxCPUCores,
			ms(r.Generator.MaxDelay), r.Generator.Text},
		Performance:      jsonPerf{r.Performance, ms(r.Baseline.P50), ms(r.Baseline.P99), r.Baseline.Requests, ms(r.SLO), r.BaselineHeldBack},
		Scalability:      jsonScalability{r.Scalability, r.Kind},
		Evidence:         r.Evidence,
		Warnings:         r.Warnings,
		SaturationSource: r.SaturationSource,
		Watched:          r.Watched,
	}
	if out.Watched == nil {
		out.Watched = []string{}
	}
	if b := r.Bottleneck; b != nil {
		out.Bottleneck = &jsonBottleneck{Name: b.Who(), Members: b.Members, CPUCores: b.CPU, Available: b.Available, Quota: numOrNull(b.Quota), Text: b.Describe()}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	if r.FitOK {
		out.USL = &jsonFit{r.Fit.Sigma, r.Fit.Kappa, r.Fit.Lambda, numOrNull(r.Fit.PeakConcurrency), r.Fit.R2}
	}
	for i, s := range r.Steps {
		out.Steps = append(out.Steps, stepJSON(s, r.Efficiency[i]))
	}
	return json.Marshal(out)
}

// stepJSON is one step of the ramp in the documented shape.
func stepJSON(s Step, efficiency float64) jsonStep {
	endpoints := []load.Endpoint{}
	if s.Load != nil {
		endpoints = append(endpoints, s.Load.Endpoints...)
	}
	return jsonStep{
		Endpoints:   endpoints,
		Concurrency: s.Concurrency, ThroughputRPS: s.ThroughputRPS, AnsweredRPS: s.AnsweredRPS, P50: ms(s.P50), P99: ms(s.P99),
		Errors: s.Errors, ErrorShare: errorShare(s), ErrorKinds: s.ErrorKinds, Requests: s.Requests, Efficiency: efficiency,
		ServerCPUCores: numOrNull(s.ServerCPUCores), ServerCPUWaitCores: numOrNull(s.ServerCPUWaitCores),
		ServerCPUPreempted: numOrNull(s.ServerCPUPreemptedCores), ServerInFlight: numOrNull(s.ServerInFlight),
		JobsWaiting: numOrNull(s.JobsWaiting), DBPoolWaiting: numOrNull(s.DBPoolWaiting), GeneratorCPUCores: s.GeneratorCPUCores,
		GeneratorSaturated: s.GeneratorSaturated, GeneratorCPUWait: numOrNull(s.GeneratorCPUWaitCores),
		Processes: append([]ProcessStep{}, s.Processes...),
	}
}
