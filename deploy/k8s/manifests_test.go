package k8s_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/perfscale/perfscale/deploy/internal/shopbin"
)

var overlays = []string{"overlays/embedded", "overlays/cluster", "overlays/sharded"}

// rendered is one overlay's objects, decoded.
type rendered struct {
	yaml        [][]byte
	deployments []appsv1.Deployment
	services    []corev1.Service
	ingresses   []networkingv1.Ingress
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	pdbs        []policyv1.PodDisruptionBudget
	netpols     []networkingv1.NetworkPolicy
	configMaps  []corev1.ConfigMap
	secrets     []corev1.Secret
	jobs        []batchv1.Job
	claims      []corev1.PersistentVolumeClaim
}

// decodeStrict fills v from one rendered object; a field the official
// type lacks (a typo, a wrong level) fails.
func decodeStrict[T any](doc []byte, list *[]T) error {
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var r rendered
	for _, res := range rm.Resources() {
		doc, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		r.yaml = append(r.yaml, doc)
		kind := res.GetKind()
		switch kind {
		case "Deployment":
			err = decodeStrict(doc, &r.deployments)
		case "Service":
			err = decodeStrict(doc, &r.services)
		case "Ingress":
			err = decodeStrict(doc, &r.ingresses)
		case "HorizontalPodAutoscaler":
			err = decodeStrict(doc, &r.hpas)
		case "PodDisruptionBudget":
			err = decodeStrict(doc, &r.pdbs)
		case "NetworkPolicy":
			err = decodeStrict(doc, &r.netpols)
		case "ConfigMap":
			err = decodeStrict(doc, &r.configMaps)
		case "Secret":
			err = decodeStrict(doc, &r.secrets)
		case "Job":
			err = decodeStrict(doc, &r.jobs)
		case "PersistentVolumeClaim":
			err = decodeStrict(doc, &r.claims)
		default:
			err = fmt.Errorf("kind %s has no decoder in this test", kind)
		}
		if err != nil {
			t.Errorf("%s: %s %s: %v", dir, kind, res.GetName(), err)
		}
	}
	return r
}

// The strict decoder refuses a field the API type does not have.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	var list []appsv1.Deployment
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := decodeStrict(doc, &list); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("decodeStrict accepted spec.replica: %v", err)
	}
}

func TestOverlaysRenderAndPassReview(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the shop for its --help; skipped with -short")
	}
	help := shopbin.ReadHelp(t, shopbin.Build(t))
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			r := render(t, dir)
			if len(r.deployments) == 0 || len(r.services) == 0 || len(r.ingresses) == 0 {
				t.Fatalf("%s renders %d deployments, %d services, %d ingresses", dir, len(r.deployments), len(r.services), len(r.ingresses))
			}
			review(t, r, help)
		})
	}
}

func review(t *testing.T, r rendered, help shopbin.Help) {
	for _, d := range r.deployments {
		reviewPodTemplate(t, "Deployment "+d.Name, d.Spec.Template, help)
		reviewShutdown(t, d)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			t.Errorf("Deployment %s selector: %v", d.Name, err)
			continue
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector %s does not match its pods' labels %v", d.Name, sel, d.Spec.Template.Labels)
		}
		if n := countPDBs(t, r.pdbs, d.Spec.Template.Labels); n != 1 {
			t.Errorf("Deployment %s: %d PodDisruptionBudgets select its pods, want 1", d.Name, n)
		}
		if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 && replicas(d) > 1 {
			t.Errorf("Deployment %s: %d replicas without a topology spread", d.Name, replicas(d))
		}
	}
	for _, j := range r.jobs {
		reviewPodTemplate(t, "Job "+j.Name, j.Spec.Template, help)
	}
	reviewServices(t, r)
	reviewIngresses(t, r)
	reviewHPAs(t, r)
	reviewSettings(t, r, help)
	reviewNetworkPolicies(t, r)
}

func replicas(d appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func countPDBs(t *testing.T, pdbs []policyv1.PodDisruptionBudget, podLabels map[string]string) int {
	n := 0
	for _, p := range pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Errorf("PodDisruptionBudget %s: %v", p.Name, err)
			continue
		}
		if !sel.Empty() && sel.Matches(labels.Set(podLabels)) {
			n++
		}
	}
	return n
}

// reviewPodTemplate: probes (Deployments), requests and limits, non-root,
// read-only root filesystem with a volume wherever the process writes,
// and flags the shop has.
func reviewPodTemplate(t *testing.T, what string, tpl corev1.PodTemplateSpec, help shopbin.Help) {
	spec := tpl.Spec
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod not runAsNonRoot", what)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range spec.Containers {
		name := what + " container " + c.Name
		if strings.HasPrefix(what, "Deployment") {
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: readiness probe is not GET /readyz", name)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: liveness probe is not GET /healthz", name)
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if p != nil && p.HTTPGet != nil && !hasPort(c, p.HTTPGet.Port.String()) {
					t.Errorf("%s: probe port %s is not a container port", name, p.HTTPGet.Port.String())
				}
			}
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", name, res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				t.Errorf("%s: no %s limit", name, res)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem not read-only", name)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: privilege escalation allowed", name)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: mounts volume %s the pod does not have", name, m.Name)
			}
		}
		args := argValues(c.Args)
		for _, a := range c.Args {
			if !strings.HasPrefix(a, "-") {
				if a != "migrate" {
					t.Errorf("%s: argument %q is not a flag or a shop command", name, a)
				}
				continue
			}
			flag := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
			if !help.Flags[flag] {
				t.Errorf("%s: flag %s is not in shop --help", name, a)
			}
		}
		if dir, ok := args["data-dir"]; ok && !mounted(c, dir) {
			t.Errorf("%s: --data-dir %s is not on a mounted volume (the root filesystem is read-only)", name, dir)
		}
		for _, e := range c.Env {
			if !help.Env[e.Name] {
				t.Errorf("%s: variable %s is not in shop --help", name, e.Name)
			}
		}
	}
}

func hasPort(c corev1.Container, port string) bool {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return true
		}
	}
	return false
}

func mounted(c corev1.Container, dir string) bool {
	for _, m := range c.VolumeMounts {
		if dir == m.MountPath || strings.HasPrefix(dir, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// argValues maps --flag=value arguments by flag name.
func argValues(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok {
			m[k] = v
		}
	}
	return m
}

// reviewShutdown: the kubelet's grace period covers the preStop sleep, the
// shop's drain delay and its shutdown timeout, each set explicitly so the
// sum cannot drift from a changed default.
func reviewShutdown(t *testing.T, d appsv1.Deployment) {
	spec := d.Spec.Template.Spec
	for _, c := range spec.Containers {
		args := argValues(c.Args)
		var total time.Duration
		for _, flag := range []string{"drain-delay", "shutdown-timeout"} {
			v, ok := args[flag]
			if !ok {
				t.Errorf("Deployment %s: --%s not set explicitly", d.Name, flag)
				continue
			}
			dur, err := time.ParseDuration(v)
			if err != nil {
				t.Errorf("Deployment %s: --%s=%s: %v", d.Name, flag, v, err)
			}
			total += dur
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			total += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		if args["drain-delay"] != "0s" && (c.Lifecycle == nil || c.Lifecycle.PreStop == nil) {
			t.Errorf("Deployment %s: serves traffic (drain delay %s) without a preStop", d.Name, args["drain-delay"])
		}
		grace := 30 * time.Second
		if spec.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		}
		if grace < total+2*time.Second {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %s < preStop + drain + shutdown %s + 2s", d.Name, grace, total)
		}
	}
}

func reviewServices(t *testing.T, r rendered) {
	for _, s := range r.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		found := false
		for _, d := range r.deployments {
			if len(s.Spec.Selector) == 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			found = true
			for _, p := range s.Spec.Ports {
				for _, c := range d.Spec.Template.Spec.Containers {
					if !hasPort(c, p.TargetPort.String()) {
						t.Errorf("Service %s port %s: target %s is not a port of Deployment %s", s.Name, p.Name, p.TargetPort.String(), d.Name)
					}
				}
			}
		}
		if !found {
			t.Errorf("Service %s selects no Deployment's pods", s.Name)
		}
	}
}

func reviewIngresses(t *testing.T, r rendered) {
	for _, in := range r.ingresses {
		for _, rule := range in.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				if b == nil || !serviceHasPort(r.services, b.Name, b.Port) {
					t.Errorf("Ingress %s path %s: backend %v is no Service port", in.Name, p.Path, b)
				}
			}
		}
	}
}

func serviceHasPort(services []corev1.Service, name string, port networkingv1.ServiceBackendPort) bool {
	for _, s := range services {
		if s.Name != name {
			continue
		}
		for _, p := range s.Spec.Ports {
			if (port.Name != "" && p.Name == port.Name) || (port.Number != 0 && p.Port == port.Number) {
				return true
			}
		}
	}
	return false
}

func reviewHPAs(t *testing.T, r rendered) {
	for _, h := range r.hpas {
		ref := h.Spec.ScaleTargetRef
		var target *appsv1.Deployment
		for i, d := range r.deployments {
			if ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && d.Name == ref.Name {
				target = &r.deployments[i]
			}
		}
		if target == nil {
			t.Errorf("HPA %s: target %s/%s does not exist", h.Name, ref.Kind, ref.Name)
			continue
		}
		if h.Spec.Behavior == nil || h.Spec.Behavior.ScaleUp == nil || h.Spec.Behavior.ScaleDown == nil {
			t.Errorf("HPA %s: scale-up and scale-down behaviour not written out", h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HPA %s: minReplicas below 2 leaves one pod to a disruption", h.Name)
		}
		for _, c := range target.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Errorf("HPA %s scales on CPU utilisation but %s has no CPU request", h.Name, c.Name)
			}
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.PodsMetricSourceType && !strings.HasPrefix(m.Pods.Metric.Name, "shop_") {
				t.Errorf("HPA %s: Pods metric %s is not one of the shop's series", h.Name, m.Pods.Metric.Name)
			}
		}
	}
}

// reviewSettings: every variable of the ConfigMaps and Secrets is one the
// shop reads, and every envFrom names an object the overlay has.
func reviewSettings(t *testing.T, r rendered, help shopbin.Help) {
	names := map[string]bool{}
	for _, cm := range r.configMaps {
		names["ConfigMap/"+cm.Name] = true
		for k := range cm.Data {
			if !help.Env[k] {
				t.Errorf("ConfigMap %s: %s is not a variable of shop --help", cm.Name, k)
			}
		}
	}
	for _, s := range r.secrets {
		names["Secret/"+s.Name] = true
		for k := range s.Data {
			if !help.Env[k] {
				t.Errorf("Secret %s: %s is not a variable of shop --help", s.Name, k)
			}
		}
		for k := range s.StringData {
			if !help.Env[k] {
				t.Errorf("Secret %s: %s is not a variable of shop --help", s.Name, k)
			}
		}
	}
	templates := map[string]corev1.PodSpec{}
	for _, d := range r.deployments {
		templates["Deployment "+d.Name] = d.Spec.Template.Spec
	}
	for _, j := range r.jobs {
		templates["Job "+j.Name] = j.Spec.Template.Spec
	}
	for what, spec := range templates {
		for _, c := range spec.Containers {
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil && !names["ConfigMap/"+e.ConfigMapRef.Name] {
					t.Errorf("%s: envFrom ConfigMap %s does not exist", what, e.ConfigMapRef.Name)
				}
				if e.SecretRef != nil && !names["Secret/"+e.SecretRef.Name] {
					t.Errorf("%s: envFrom Secret %s does not exist", what, e.SecretRef.Name)
				}
			}
		}
		for _, v := range spec.Volumes {
			if v.PersistentVolumeClaim != nil && !hasClaim(r.claims, v.PersistentVolumeClaim.ClaimName) {
				t.Errorf("%s: volume %s claims %s, which does not exist", what, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
}

func hasClaim(claims []corev1.PersistentVolumeClaim, name string) bool {
	for _, c := range claims {
		if c.Name == name {
			return true
		}
	}
	return false
}

// reviewNetworkPolicies: every shop pod is selected by a policy, and every
// named port a policy opens is a port of the pods it selects.
func reviewNetworkPolicies(t *testing.T, r rendered) {
	for _, d := range r.deployments {
		podLabels := labels.Set(d.Spec.Template.Labels)
		covered := false
		for _, np := range r.netpols {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				t.Errorf("NetworkPolicy %s: %v", np.Name, err)
				continue
			}
			if !sel.Matches(podLabels) {
				continue
			}
			covered = true
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port != nil && p.Port.StrVal != "" && !hasPort(d.Spec.Template.Spec.Containers[0], p.Port.StrVal) {
						t.Errorf("NetworkPolicy %s opens port %s that Deployment %s lacks", np.Name, p.Port.StrVal, d.Name)
					}
				}
			}
		}
		if !covered {
			t.Errorf("Deployment %s: no NetworkPolicy selects its pods", d.Name)
		}
	}
}

// The scale-out example of `loadlab scaleout --help` scales the cluster
// overlay's API Deployment.
func TestScaleoutExampleNamesTheDeployment(t *testing.T) {
	root, err := shopbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "cmd", "loadlab", "scaleout.go"))
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`deployment/([a-z0-9-]+)`).FindAllStringSubmatch(string(src), -1)
	if len(refs) == 0 {
		t.Fatal("no kubectl example in loadlab scaleout's usage")
	}
	r := render(t, "overlays/cluster")
	for _, ref := range refs {
		found := false
		for _, d := range r.deployments {
			found = found || d.Name == ref[1]
		}
		if !found {
			t.Errorf("loadlab scaleout's example scales deployment/%s, which the cluster overlay does not have", ref[1])
		}
	}
}

// Every shop container of an overlay runs the same, pinned image.
func TestOneImagePerOverlay(t *testing.T) {
	for _, dir := range overlays {
		r := render(t, dir)
		images := map[string]bool{}
		for _, d := range r.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				images[c.Image] = true
			}
		}
		for _, j := range r.jobs {
			for _, c := range j.Spec.Template.Spec.Containers {
				images[c.Image] = true
			}
		}
		if len(images) != 1 {
			t.Errorf("%s runs %d images, want one: %v", dir, len(images), images)
		}
		for img := range images {
			if !strings.Contains(img, ":") || strings.HasSuffix(img, ":latest") {
				t.Errorf("%s: image %s has no pinned tag", dir, img)
			}
		}
	}
}

// podEnv is the shop's settings a pod template's container sees: its
// envFrom ConfigMaps and Secrets, then its own env.
func podEnv(r rendered, c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		for _, cm := range r.configMaps {
			if from.ConfigMapRef != nil && cm.Name == from.ConfigMapRef.Name {
				for k, v := range cm.Data {
					env[k] = v
				}
			}
		}
		for _, s := range r.secrets {
			if from.SecretRef != nil && s.Name == from.SecretRef.Name {
				for k, v := range s.Data {
					env[k] = string(v)
				}
				for k, v := range s.StringData {
					env[k] = v
				}
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// The migration Job migrates exactly the databases the Deployments open:
// the same SHOP_DATABASE_URL (every shard's URL, in shard order) and the
// same SHOP_SHARDS, which equals the number of URLs (the shop refuses
// another count, so a half-edited list would leave every pod failing).
func TestMigrationAndPodsSeeTheSameDatabases(t *testing.T) {
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			r := render(t, dir)
			templates := map[string]corev1.PodSpec{}
			for _, d := range r.deployments {
				templates["Deployment "+d.Name] = d.Spec.Template.Spec
			}
			for _, j := range r.jobs {
				templates["Job "+j.Name] = j.Spec.Template.Spec
			}
			type databases struct{ urls, shards string }
			seen := map[databases][]string{}
			for what, spec := range templates {
				for _, c := range spec.Containers {
					env := podEnv(r, c)
					db := databases{env["SHOP_DATABASE_URL"], env["SHOP_SHARDS"]}
					seen[db] = append(seen[db], what)
					urls := strings.Fields(db.urls)
					if db.shards != "" && db.shards != fmt.Sprint(len(urls)) {
						t.Errorf("%s: SHOP_SHARDS=%s with %d URLs in SHOP_DATABASE_URL", what, db.shards, len(urls))
					}
					if db.shards == "" && len(urls) > 1 {
						t.Errorf("%s: %d URLs in SHOP_DATABASE_URL without SHOP_SHARDS", what, len(urls))
					}
				}
			}
			if len(seen) != 1 {
				t.Errorf("%s: the pods see different databases: %v", dir, seen)
			}
			if dir == "overlays/sharded" {
				for db := range seen {
					if n := len(strings.Fields(db.urls)); n < 2 || len(r.jobs) != 1 {
						t.Errorf("%s: %d shard URLs and %d migration Jobs, want 2 or more and one", dir, n, len(r.jobs))
					}
				}
			}
		})
	}
}

// The release set in an overlay (kustomize edit set image
// shop=REGISTRY/shop:TAG there, as the README says) reaches every one of
// its containers: before, the base's own setting had renamed the API's
// image, so a new tag reached only the worker and the migration Job.
func TestTheOverlaysImageReachesEveryContainer(t *testing.T) {
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tree := t.TempDir()
			for _, sub := range []string{"base", "components", "overlays"} {
				if err := os.CopyFS(filepath.Join(tree, sub), os.DirFS(sub)); err != nil {
					t.Fatal(err)
				}
			}
			k := filepath.Join(tree, dir, "kustomization.yaml")
			src, err := os.ReadFile(k)
			if err != nil {
				t.Fatal(err)
			}
			const tag = `newTag: "0.1.0"`
			if strings.Count(string(src), tag) != 1 {
				t.Fatalf("%s: want one image setting with %s", dir, tag)
			}
			if err := os.WriteFile(k, []byte(strings.Replace(string(src), tag, `newTag: "9.9.9-test"`, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			r := render(t, filepath.Join(tree, dir))
			var specs []corev1.PodSpec
			for _, d := range r.deployments {
				specs = append(specs, d.Spec.Template.Spec)
			}
			for _, j := range r.jobs {
				specs = append(specs, j.Spec.Template.Spec)
			}
			for _, spec := range specs {
				for _, c := range spec.Containers {
					if c.Image != "ghcr.io/perfscale/shop:9.9.9-test" {
						t.Errorf("%s: container %s runs %s, not the overlay's release", dir, c.Name, c.Image)
					}
				}
			}
		})
	}
}
