package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
)

// ProblemTypeBase prefixes every problem type: the type of a problem is
// ProblemTypeBase + the stable error type, e.g.
// https://connec.dev/errors/policy_denied. The bare stable type is also in
// the error_type member.
const ProblemTypeBase = "https://connec.dev/errors/"

// Problem types the gateway itself answers with, for conditions no service
// call is involved in. Every other problem carries a fault.Type.
const (
	typeRouteNotFound    fault.Type = "route_not_found"
	typeMethodNotAllowed fault.Type = "method_not_allowed"
)

// Problem is an RFC 9457 problem detail. Type, Title, Status, Detail and
// Instance are the RFC's members; the rest are connec's extensions.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
	// ErrorType is the stable error type (the last segment of Type), the
	// same value MCP tool results carry as error.type.
	ErrorType string `json:"error_type"`
	// RequestID is recorded on the audit row of the call.
	RequestID string `json:"request_id,omitempty"`
	// Errors lists the offending fields of an invalid request.
	Errors []FieldProblem `json:"errors,omitempty"`
	// Details are the fault's details as MCP returns them.
	Details map[string]any `json:"details,omitempty"`
}

// FieldProblem is one offending field: its name, the JSON pointer inside it
// when a schema violation was found below the field, and what is wrong.
type FieldProblem struct {
	Field   string `json:"field,omitempty"`
	Pointer string `json:"pointer,omitempty"`
	Detail  string `json:"detail"`
}

// statusError overrides the status a fault maps to (413, 415, …) while
// keeping the fault for the audit row and the problem body.
type statusError struct {
	status int
	err    *fault.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// withStatus returns err answered with status.
func withStatus(status int, err *fault.Error) error { return &statusError{status: status, err: err} }

// gatewayProblem is a problem of one of the gateway's own types.
func gatewayProblem(status int, t fault.Type, detail string) error {
	return &statusError{status: status, err: &fault.Error{Type: t, Message: detail}}
}

// statusOf maps a stable error type to an HTTP status. hide says the URL
// names one resource: policy_denied then answers 404, as a missing resource
// does, since the service cannot (and must not) tell the two apart.
func statusOf(t fault.Type, hide bool) int {
	switch t {
	case fault.InvalidArgument, fault.Validation:
		return http.StatusBadRequest
	case fault.Unauthenticated:
		return http.StatusUnauthorized
	case fault.PolicyDenied:
		if hide {
			return http.StatusNotFound
		}
		return http.StatusForbidden
	case fault.NotFound, typeRouteNotFound:
		return http.StatusNotFound
	case typeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case fault.Conflict, fault.CredentialRevoked, fault.CredentialExpired, fault.CredentialDisabled, fault.CredentialMissing:
		return http.StatusConflict
	case fault.QuotaExceeded:
		return http.StatusTooManyRequests
	case fault.Unavailable, fault.Transient:
		return http.StatusServiceUnavailable
	case fault.Timeout:
		return http.StatusGatewayTimeout
	case fault.Permanent, fault.ResponseTooLarge:
		return http.StatusBadGateway
	case typeCSRF:
		return http.StatusForbidden
	default:
		return http.StatusInternalServerError
	}
}

var titles = map[fault.Type]string{
	fault.InvalidArgument:    "Invalid argument",
	fault.Validation:         "Validation failed",
	fault.Unauthenticated:    "Authentication required",
	fault.PolicyDenied:       "Denied by policy",
	fault.NotFound:           "Not found",
	fault.Conflict:           "Conflict with the current state",
	fault.CredentialRevoked:  "Credential revoked",
	fault.CredentialExpired:  "Credential expired",
	fault.CredentialDisabled: "Credential disabled",
	fault.CredentialMissing:  "Credential missing",
	fault.QuotaExceeded:      "Quota exceeded",
	fault.Unavailable:        "Service unavailable",
	fault.Transient:          "Temporary failure",
	fault.Timeout:            "Timed out",
	fault.Permanent:          "Upstream failure",
	fault.ResponseTooLarge:   "Response too large",
	fault.Internal:           "Internal error",
	typeRouteNotFound:        "No such route",
	typeMethodNotAllowed:     "Method not allowed",
	typeCSRF:                 "Form refused",
}

// problemOf renders err as a problem for r; hide as in statusOf.
func problemOf(r *http.Request, err error, hide bool) Problem {
	pub := fault.PublicOf(err)
	status := statusOf(pub.Type, hide)
	var se *statusError
	if errors.As(err, &se) {
		status = se.status
	}
	title := titles[pub.Type]
	if title == "" {
		title = http.StatusText(status)
	}
	return Problem{
		Type:      ProblemTypeBase + string(pub.Type),
		Title:     title,
		Status:    status,
		Detail:    pub.Message,
		Instance:  r.URL.Path,
		ErrorType: string(pub.Type),
		RequestID: callctx.RequestID(r.Context()),
		Errors:    fieldProblems(pub),
		Details:   pub.Details,
	}
}

// fieldProblems lists the fields an invalid-argument fault names.
func fieldProblems(pub fault.Public) []FieldProblem {
	field, _ := pub.Details["field"].(string)
	switch vs := pub.Details["violations"].(type) {
	case []jsonschema.Violation:
		out := make([]FieldProblem, 0, len(vs))
		for _, v := range vs {
			out = append(out, FieldProblem{Field: field, Pointer: v.Path, Detail: v.Message})
		}
		return out
	case []any:
		out := make([]FieldProblem, 0, len(vs))
		for _, v := range vs {
			m, _ := v.(map[string]any)
			path, _ := m["path"].(string)
			msg, _ := m["message"].(string)
			out = append(out, FieldProblem{Field: field, Pointer: path, Detail: msg})
		}
		return out
	}
	if field != "" {
		return []FieldProblem{{Field: field, Detail: pub.Message}}
	}
	return nil
}

// writeProblem answers err as application/problem+json on a URL that names
// no single resource (policy_denied is 403).
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	writeProblemFor(w, r, err, false)
}

// writeProblemFor answers err as application/problem+json; hide as in
// statusOf.
func writeProblemFor(w http.ResponseWriter, r *http.Request, err error, hide bool) {
	p := problemOf(r, err, hide)
	if p.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", retryAfter(p.Details))
	}
	if p.Status == http.StatusServiceUnavailable && p.ErrorType == string(fault.Transient) {
		if ra, ok := retryAfterDetail(p.Details); ok {
			w.Header().Set("Retry-After", ra)
		}
	}
	body, merr := json.Marshal(p)
	if merr != nil {
		body = []byte(fmt.Sprintf(`{"type":%q,"title":"Internal error","status":500,"detail":"internal error","error_type":"internal"}`, ProblemTypeBase+"internal"))
		p.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// retryAfter is the Retry-After value for a quota_exceeded fault: its
// retry_after_ms or retry_after detail, in whole seconds, at least 1.
func retryAfter(details map[string]any) string {
	if ra, ok := retryAfterDetail(details); ok {
		return ra
	}
	return "1"
}

func retryAfterDetail(details map[string]any) (string, bool) {
	secs := func(ms float64) string { return strconv.Itoa(max(1, int(math.Ceil(ms/1000)))) }
	switch v := details["retry_after_ms"].(type) {
	case int64:
		return secs(float64(v)), true
	case int:
		return secs(float64(v)), true
	case float64:
		return secs(v), true
	}
	switch v := details["retry_after"].(type) {
	case string:
		v = strings.TrimSpace(v)
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return strconv.Itoa(max(1, n)), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return secs(float64(time.Until(t).Milliseconds())), true
		}
	case float64:
		return secs(v * 1000), true
	case int:
		return secs(float64(v) * 1000), true
	}
	return "", false
}

// StatusOf is the HTTP status a stable error type answers with; hide says
// the URL names one resource (policy_denied then answers 404).
func StatusOf(t fault.Type, hide bool) int { return statusOf(t, hide) }
