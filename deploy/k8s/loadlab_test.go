package k8s_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/perfscale/perfscale/deploy/internal/shopbin"
)

// loadlabFlags builds loadlab from the parent module and returns the
// flags `loadlab COMMAND --help` lists, by command.
func loadlabFlags(t *testing.T, commands ...string) map[string]map[string]bool {
	t.Helper()
	root, err := shopbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "loadlab")
	build := exec.Command("go", "build", "-o", bin, "./cmd/loadlab")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/loadlab: %v\n%s", err, out)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)
	out := map[string]map[string]bool{}
	for _, c := range commands {
		help, err := exec.Command(bin, c, "--help").Output()
		if err != nil {
			t.Fatalf("loadlab %s --help: %v", c, err)
		}
		out[c] = map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(string(help), -1) {
			out[c][m[1]] = true
		}
	}
	return out
}

// The loadlab kustomization: the agents are an Indexed Job whose pods the
// coordinator reaches by name through a headless Service, as many names
// in --agents as the Job has pods, on the port the agents listen on, and
// every flag is one loadlab has.
func TestLoadlabAgentsAsAnIndexedJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds loadlab for its --help; skipped with -short")
	}
	flags := loadlabFlags(t, "agent", "run")
	r := render(t, "loadlab")
	var agents, coordinator *batchv1.Job
	for i := range r.jobs {
		switch r.jobs[i].Name {
		case "loadlab-agents":
			agents = &r.jobs[i]
		case "loadlab-run":
			coordinator = &r.jobs[i]
		}
	}
	if agents == nil || coordinator == nil || len(r.services) != 1 {
		t.Fatalf("want the Jobs loadlab-agents and loadlab-run and one Service, got %d jobs, %d services", len(r.jobs), len(r.services))
	}
	svc := r.services[0]
	spec := agents.Spec
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion || spec.Completions == nil || spec.Parallelism == nil || *spec.Completions != *spec.Parallelism {
		t.Fatalf("agents Job: not Indexed with completions = parallelism")
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || spec.Template.Spec.Subdomain != svc.Name {
		t.Errorf("Service %s is not headless or not the agents' subdomain (%q)", svc.Name, spec.Template.Spec.Subdomain)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(spec.Template.Labels)) {
		t.Errorf("Service %s selector %v does not select the agents' pods %v", svc.Name, svc.Spec.Selector, spec.Template.Labels)
	}
	agent := spec.Template.Spec.Containers[0]
	if !slices.Equal(agent.Args[:3], []string{"agent", "--listen", ":7070"}) || agent.Ports[0].ContainerPort != 7070 || svc.Spec.Ports[0].Port != 7070 {
		t.Errorf("agents listen with %v on port %d behind Service port %d, want :7070 throughout", agent.Args, agent.Ports[0].ContainerPort, svc.Spec.Ports[0].Port)
	}
	var want []string
	for i := range int(*spec.Completions) {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", agents.Name, i, svc.Name, svc.Spec.Ports[0].Port))
	}
	run := coordinator.Spec.Template.Spec.Containers[0]
	if got := argValue(run.Args, "--agents"); got != strings.Join(want, ",") {
		t.Errorf("coordinator --agents %q, want the Job's pods %q", got, strings.Join(want, ","))
	}
	for _, c := range []struct {
		cmd  string
		args []string
	}{{"agent", agent.Args}, {"run", run.Args}} {
		if c.args[0] != c.cmd {
			t.Errorf("container args %v do not start with %s", c.args, c.cmd)
		}
		for _, a := range c.args[1:] {
			if name, ok := strings.CutPrefix(a, "--"); ok && !flags[c.cmd][strings.SplitN(name, "=", 2)[0]] {
				t.Errorf("loadlab %s has no flag %s", c.cmd, a)
			}
		}
	}
	// Only the coordinator reaches the agents; the agents reach the shop.
	admits := map[string]bool{}
	for _, np := range r.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				from, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case sel.Matches(labels.Set(spec.Template.Labels)) && from.Matches(labels.Set(coordinator.Spec.Template.Labels)):
					admits["coordinator to agents"] = true
				case sel.Matches(labels.Set{"app.kubernetes.io/name": "shop"}) && from.Matches(labels.Set(spec.Template.Labels)):
					admits["agents to shop"] = true
				}
			}
		}
	}
	if !admits["coordinator to agents"] || !admits["agents to shop"] {
		t.Errorf("NetworkPolicies admit %v, want the coordinator to the agents and the agents to the shop", admits)
	}
	for _, j := range []*batchv1.Job{agents, coordinator} {
		reviewLoadlabPod(t, "Job "+j.Name, j.Spec.Template.Spec)
	}
}

// argValue is the value following name in args ("" without it).
func argValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func reviewLoadlabPod(t *testing.T, what string, spec corev1.PodSpec) {
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod not runAsNonRoot", what)
	}
	for _, c := range spec.Containers {
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", what, res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				t.Errorf("%s: no %s limit", what, res)
			}
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem not read-only", what)
		}
	}
}
