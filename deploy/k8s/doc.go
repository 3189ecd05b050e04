// Package k8s holds the shop's Kubernetes manifests (a kustomize base and
// the overlays embedded, cluster and sharded, the last two sharing the
// component cluster) and the tests that render them,
// decode every object strictly into the official API types and check
// what a reviewer would: probes, limits, disruption budgets, selectors,
// ports, autoscaler targets, and flags and variables the shop really has.
package k8s
