package httpapi

import "net/http"

// WithReplica names the process that answered in an X-Replica header on
// every response, problems and unknown routes included, so a client behind a
// load balancer (or a test counting how requests were spread) can see which
// replica served it.
//
// The header's value is made once and shared by every response (net/http
// only reads it): a request, a refusal too, spends no allocation on it.
func WithReplica(name string, next http.Handler) http.Handler {
	value := []string{name}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Replica"] = value[:1:1]
		next.ServeHTTP(w, r)
	})
}
