package httpapi

import "net/http"

// WithReplica names the process that answered in an X-Replica header on
// every response, problems and unknown routes included, so a client behind a
// load balancer (or a test counting how requests were spread) can see which
// replica served it.
func WithReplica(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Replica", name)
		next.ServeHTTP(w, r)
	})
}
