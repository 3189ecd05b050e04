package distributed

import (
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
)

// The agent's HTTP interface (JSON bodies):
//
//	POST   /v1/runs             a Spec; 201 {"id", "agent_time"}; 400 a bad spec; 409 busy
//	POST   /v1/runs/{id}/start  {"start_at"} in the agent's clock; 200 and a stream of
//	                            events, one JSON object a line, ending with "result" or "error"
//	DELETE /v1/runs/{id}        forget a prepared run that will not start
//	GET    /healthz             200 while the agent serves
//
// A coordinator that goes away ends the run it started (the agent stops
// sending load), so no agent keeps loading a target nobody watches.

// prepared is the answer to a Spec.
type prepared struct {
	ID string `json:"id"`
	// AgentTime is the agent's clock when it answered: with the round
	// trip's midpoint, the coordinator estimates the clocks' offset.
	AgentTime time.Time `json:"agent_time"`
}

// startRequest asks a prepared run to start at StartAt (agent's clock).
type startRequest struct {
	StartAt time.Time `json:"start_at"`
}

// Event kinds on the start stream.
const (
	eventProgress = "progress"
	eventResult   = "result"
	eventError    = "error"
)

// event is one line of the start stream. Progress lines come about twice
// a second, also while the agent waits for the start and for its last
// answers: a silent agent is a dead one.
type event struct {
	Event    string         `json:"event"`
	Progress *load.Snapshot `json:"progress,omitempty"`
	Result   *agentResult   `json:"result,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// agentResult is an agent's load.Result with its histograms, each in
// hdrhistogram's compressed V2 encoding (base64).
type agentResult struct {
	Result *load.Result `json:"result"`
	// Total and Success are the whole run's histograms; Endpoints and
	// EndpointSuccess by endpoint; Stages by stage; Seconds by second of
	// the series (Seconds[i] is Result.Series[i]).
	Total           string   `json:"total,omitempty"`
	Success         string   `json:"success,omitempty"`
	Endpoints       []string `json:"endpoints,omitempty"`
	EndpointSuccess []string `json:"endpoint_success,omitempty"`
	Stages          []string `json:"stages,omitempty"`
	Seconds         []string `json:"seconds,omitempty"`
}

func encode(h *hdrhistogram.Histogram) (string, error) {
	if h == nil {
		return "", nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("encode histogram: %w", err)
	}
	return string(b), nil
}

func decode(b string) (*hdrhistogram.Histogram, error) {
	if b == "" {
		return nil, nil
	}
	h, err := hdrhistogram.Decode([]byte(b))
	if err != nil {
		return nil, fmt.Errorf("decode histogram: %w", err)
	}
	return h, nil
}

// pack encodes a run's histograms next to its result; seconds are the
// per-second histograms already encoded.
func pack(res *load.Result, seconds []string) (*agentResult, error) {
	out := &agentResult{Result: res, Seconds: seconds}
	var err error
	if out.Total, err = encode(res.Histogram); err != nil {
		return nil, err
	}
	if out.Success, err = encode(res.SuccessHistogram); err != nil {
		return nil, err
	}
	for _, ep := range res.Endpoints {
		h, err := encode(ep.Histogram)
		if err != nil {
			return nil, err
		}
		ok, err := encode(ep.SuccessHistogram)
		if err != nil {
			return nil, err
		}
		out.Endpoints = append(out.Endpoints, h)
		out.EndpointSuccess = append(out.EndpointSuccess, ok)
	}
	for _, st := range res.Stages {
		h, err := encode(st.Histogram)
		if err != nil {
			return nil, err
		}
		out.Stages = append(out.Stages, h)
	}
	return out, nil
}

// unpack decodes the histograms back into the result, and returns the
// per-second ones.
func (a *agentResult) unpack() ([]*hdrhistogram.Histogram, error) {
	res := a.Result
	if res == nil {
		return nil, fmt.Errorf("no result in the agent's answer")
	}
	var err error
	if res.Histogram, err = decode(a.Total); err != nil {
		return nil, err
	}
	if res.SuccessHistogram, err = decode(a.Success); err != nil {
		return nil, err
	}
	if len(a.Endpoints) != len(res.Endpoints) || len(a.EndpointSuccess) != len(res.Endpoints) || len(a.Stages) != len(res.Stages) || len(a.Seconds) != len(res.Series) {
		return nil, fmt.Errorf("the agent's histograms do not match its result")
	}
	for i := range res.Endpoints {
		if res.Endpoints[i].Histogram, err = decode(a.Endpoints[i]); err != nil {
			return nil, err
		}
		if res.Endpoints[i].SuccessHistogram, err = decode(a.EndpointSuccess[i]); err != nil {
			return nil, err
		}
	}
	for i := range res.Stages {
		if res.Stages[i].Histogram, err = decode(a.Stages[i]); err != nil {
			return nil, err
		}
	}
	seconds := make([]*hdrhistogram.Histogram, len(a.Seconds))
	for i, b := range a.Seconds {
		if seconds[i], err = decode(b); err != nil {
			return nil, err
		}
	}
	return seconds, nil
}
