package measure

import (
	"encoding/json"
	"math"
)

// MarshalJSON writes a watched group's figures for a step, unknown ones as
// null.
func (p ProcessStep) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name           string   `json:"name"`
		Members        int      `json:"members"`
		CPUCores       float64  `json:"cpu_cores"`
		CPUWaitCores   *float64 `json:"cpu_wait_cores"`
		PreemptedCores *float64 `json:"cpu_wait_preempted_cores"`
		QuotaCores     *float64 `json:"quota_cores"`
		ThrottledShare *float64 `json:"throttled_share"`
		Suspect        bool     `json:"suspect"`
	}{p.Name, p.Members, p.CPUCores, NumOrNull(p.WaitCores), NumOrNull(p.PreemptedCores), NumOrNull(p.QuotaCores), NumOrNull(p.ThrottledShare), p.Suspect})
}

// NumOrNull is f for JSON, nil (null) when it is NaN or infinite.
func NumOrNull(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}
