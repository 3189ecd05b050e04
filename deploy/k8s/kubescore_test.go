package k8s_test

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zegl/kube-score/config"
	ks "github.com/zegl/kube-score/domain"
	"github.com/zegl/kube-score/parser"
	"github.com/zegl/kube-score/renderer/ci"
	"github.com/zegl/kube-score/score"
	"github.com/zegl/kube-score/score/checks"
	"github.com/zegl/kube-score/scorecard"
)

type namedReader struct {
	io.Reader
	name string
}

func (n namedReader) Name() string { return n.name }

// kube-score's default checks pass on every overlay and on the loadlab
// kustomization at warning level: a finding is either fixed or ignored
// on the object with a kube-score/ignore annotation whose comment says why.
func TestKubeScore(t *testing.T) {
	for _, dir := range append(overlays[:len(overlays):len(overlays)], "loadlab") {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			r := render(t, dir)
			all := bytes.Join(r.yaml, []byte("---\n"))
			ver, err := config.ParseSemver("v1.33")
			if err != nil {
				t.Fatal(err)
			}
			run := &config.RunConfiguration{
				UseIgnoreChecksAnnotation:   true,
				UseOptionalChecksAnnotation: true,
				KubernetesVersion:           ver,
				MinReplicasDeployment:       2,
				MinReplicasHPA:              2,
			}
			p, err := parser.New(&parser.Config{})
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := p.ParseFiles([]ks.NamedReader{namedReader{bytes.NewReader(all), dir}})
			if err != nil {
				t.Fatal(err)
			}
			card, err := score.Score(parsed, score.RegisterAllChecks(parsed, &checks.Config{}, run), run)
			if err != nil {
				t.Fatal(err)
			}
			if card.AnyBelowOrEqualToGrade(scorecard.GradeWarning) {
				out, _ := io.ReadAll(ci.CI(card))
				var bad []string
				for _, line := range strings.Split(string(out), "\n") {
					if strings.HasPrefix(line, "[WARNING]") || strings.HasPrefix(line, "[CRITICAL]") {
						bad = append(bad, line)
					}
				}
				t.Errorf("kube-score findings in %s:\n%s", dir, strings.Join(bad, "\n"))
			}
		})
	}
}
