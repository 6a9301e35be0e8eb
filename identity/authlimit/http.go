package authlimit

import (
	"net/http"
	"strconv"

	"github.com/connec/connec/fault"
)

// WriteHTTP answers a request whose authentication failed with err (from
// Authenticate) in plain text: 429 with Retry-After for a source over its
// limit, 503 when the token or the refusal could not be checked or
// written, 401 with a Bearer challenge otherwise.
func WriteHTTP(w http.ResponseWriter, err error) {
	switch fault.As(err).Type {
	case fault.QuotaExceeded:
		w.Header().Set("Retry-After", strconv.FormatInt(RetryAfter(err), 10))
		http.Error(w, "too many requests: too many failed authentications from this address; try again later", http.StatusTooManyRequests)
	case fault.Unavailable:
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="connec"`)
		http.Error(w, "unauthorized: a valid bearer token is required", http.StatusUnauthorized)
	}
}

// RetryAfter is the whole seconds (at least 1) a quota_exceeded refusal
// asks the caller to wait.
func RetryAfter(err error) int64 {
	ms, _ := fault.As(err).Details["retry_after_ms"].(int64)
	return max((ms+999)/1000, 1)
}
