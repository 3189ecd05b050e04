// Package clustertest holds the integration tests of scripts/cluster.sh:
// the ordering service as N API replicas and a worker on PostgreSQL behind
// nginx, started, damaged and stopped the way an operator would. It has no
// code of its own; the tests skip when PostgreSQL or nginx is missing, and
// fail instead under CI=true.
package clustertest
