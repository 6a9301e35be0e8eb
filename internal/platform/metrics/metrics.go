// Package metrics holds connec's Prometheus metrics in one registry of its
// own, and the few functions the core and the transports call to record
// them. It decides nothing and imports nothing of connec, so any package —
// core or transport — may call it; the gateway serves the registry at
// /metrics.
//
// Label values are bounded: callers pass names from the connector registry
// or fixed vocabularies (statuses, decision results), and every value is
// cut to 64 bytes, with "" recorded as "unknown".
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Decision results for ObserveDecision.
const (
	ResultAllow = "allow"
	ResultDeny  = "deny"
	ResultError = "error"
)

// Registry is connec's metrics registry: the collectors below plus the Go
// runtime and process collectors.
var Registry = prometheus.NewRegistry()

// latencyBuckets spans sub-millisecond decisions to multi-second operations.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

var (
	invocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "connec", Name: "invocations_total",
		Help: "Connector operation invocations, by connector type, operation and outcome status.",
	}, []string{"type", "operation", "status"})
	operationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "connec", Name: "operation_duration_seconds",
		Help:    "Time to run one connector operation (executor), by connector type and operation (a resource subscription's runs, which last as long as the subscription, are not observed).",
		Buckets: latencyBuckets,
	}, []string{"type", "operation"})
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "connec", Name: "policy_decisions_total",
		Help: "Policy decisions, by result (allow, deny, error).",
	}, []string{"result"})
	decisionSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "connec", Name: "policy_decision_duration_seconds",
		Help:    "Time to decide one policy request.",
		Buckets: latencyBuckets,
	})
	auditWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "connec", Name: "audit_writes_total",
		Help: "Audit row writes (group commits count once per row), by result (ok, error).",
	}, []string{"result"})
	auditSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "connec", Name: "audit_write_duration_seconds",
		Help:    "Time for an audit row to become durable, as its caller waited for it.",
		Buckets: latencyBuckets,
	})
	httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "connec", Name: "http_requests_total",
		Help: "HTTP requests served by the gateway, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "connec", Name: "auth_failures_total",
		Help: "Failed authentications, by transport and outcome: audited (its own audit row), counted (into its source's row for the interval), limited (refused unchecked, 429).",
	}, []string{"transport", "outcome"})
	httpSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "connec", Name: "http_request_duration_seconds",
		Help:    "Time to serve one gateway HTTP request, by route pattern.",
		Buckets: latencyBuckets,
	}, []string{"route"})
	openclawFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "connec", Name: "openclaw_host_failures_total",
		Help: "OpenClaw plugin hosts that failed to start or died during their call, by connector type and reason " +
			"(start_failed, exited, timeout, frame_too_large, protocol).",
	}, []string{"type", "reason"})
	openclawLooping = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "connec", Name: "openclaw_instances_crash_looping",
		Help: "OpenClaw connector instances whose plugin host failed several times in a row, by connector type.",
	}, []string{"type"})
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		invocations, operationSeconds, decisions, decisionSeconds, auditWrites, auditSeconds, httpRequests, httpSeconds, authFailures,
		openclawFailures, openclawLooping,
	)
}

// Handler serves the registry in the Prometheus exposition format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

// label bounds a label value.
func label(s string) string {
	if s == "" {
		return "unknown"
	}
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// ObserveInvocation records one finished invocation of operation on a
// connector of connectorType: status is its outcome ("ok", or the stable
// error type: "policy_denied", "timeout", …) and d how long the operation
// itself ran (zero when it never ran, e.g. denied: then no latency is
// recorded).
func ObserveInvocation(connectorType, operation, status string, d time.Duration) {
	connectorType, operation = label(connectorType), label(operation)
	invocations.WithLabelValues(connectorType, operation, label(status)).Inc()
	if d > 0 {
		operationSeconds.WithLabelValues(connectorType, operation).Observe(d.Seconds())
	}
}

// ObserveDecision records one policy decision: result is ResultAllow,
// ResultDeny or ResultError (evaluation failed), d how long it took.
func ObserveDecision(result string, d time.Duration) {
	decisions.WithLabelValues(label(result)).Inc()
	decisionSeconds.Observe(d.Seconds())
}

// ObserveAuditWrite records one audit row write that took d; err is the
// write's outcome.
func ObserveAuditWrite(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	auditWrites.WithLabelValues(result).Inc()
	auditSeconds.Observe(d.Seconds())
}

// ObserveHTTP records one gateway request: route is the matched route
// pattern (never the raw path), code the status written.
func ObserveHTTP(route, method string, code int, d time.Duration) {
	route = label(route)
	httpRequests.WithLabelValues(route, label(method), strconv.Itoa(code)).Inc()
	httpSeconds.WithLabelValues(route).Observe(d.Seconds())
}

// Outcomes for ObserveAuthFailure.
const (
	AuthAudited = "audited"
	AuthCounted = "counted"
	AuthLimited = "limited"
)

// ObserveAuthFailure records one failed authentication over transport and
// what became of it (AuthAudited, AuthCounted or AuthLimited).
func ObserveAuthFailure(transport, outcome string) {
	authFailures.WithLabelValues(label(transport), label(outcome)).Inc()
}

// OpenClawHostFailure counts one plugin host of connectorType that failed
// to start or died during its call; reason is from a fixed vocabulary.
func OpenClawHostFailure(connectorType, reason string) {
	openclawFailures.WithLabelValues(label(connectorType), label(reason)).Inc()
}

// OpenClawCrashLooping records an instance of connectorType starting
// (looping true) or ending (false) a crash loop.
func OpenClawCrashLooping(connectorType string, looping bool) {
	g := openclawLooping.WithLabelValues(label(connectorType))
	if looping {
		g.Inc()
	} else {
		g.Dec()
	}
}
