// Package metricstest reads connec's Prometheus registry in tests, as a
// scrape would see it.
package metricstest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/connec/connec/internal/platform/metrics"
)

// Value is the value of the first series of metric name whose labels
// include labels: a counter's or a gauge's value, a histogram's number of
// observations; 0 when there is no such series.
func Value(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetGauge().GetValue()
}
