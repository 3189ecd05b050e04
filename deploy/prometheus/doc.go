// Package prometheus holds the shop's Prometheus recording and alerting
// rules (rules.yml, tested by promtool with rules_test.yml) and the tests
// that hold them and the Grafana dashboard (deploy/grafana) to PromQL that
// parses and to metric names a running shop exports.
package prometheus
