// Package metrics holds one command's Prometheus registry and the proxy's
// request metrics.
package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proxyctl/proxyctl/internal/ratelimit"
)

// Metrics is a command's registry. Each command builds its own: nothing is
// registered in the global default registry.
type Metrics struct {
	Registry *prometheus.Registry

	requests     *prometheus.CounterVec
	byCode       [600]atomic.Pointer[prometheus.Counter]
	duration     prometheus.Histogram
	upstreamErrs *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	refused      *prometheus.CounterVec
	clientErrs   *prometheus.CounterVec
}

// New registers the process and proxy metrics in a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyctl_http_requests_total",
			Help: "HTTP requests handled by the proxy, by response status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proxyctl_http_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyctl_upstream_errors_total",
			Help: "Failed upstream exchanges, by kind (connect, connect_timeout, timeout, other).",
		}, []string{"kind"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyctl_rate_limited_total",
			Help: "Requests or messages rejected by a rate limit, by tier.",
		}, []string{"tier"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyctl_refused_total",
			Help: "Requests the proxy answered itself with an error, by status code.",
		}, []string{"code"}),
		clientErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyctl_client_errors_total",
			Help: "Exchanges the client broke while its response was being sent, by kind (send_timeout: it stopped reading).",
		}, []string{"kind"}),
	}
	m.clientErrs.WithLabelValues("send_timeout") // exported as 0 from the start
	reg.MustRegister(m.requests, m.duration, m.upstreamErrs, m.rateLimited, m.refused, m.clientErrs)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Request counts one finished request. The per-code counter is resolved
// once and cached, so the hot path does no label hashing or allocation.
func (m *Metrics) Request(status int, d time.Duration) {
	m.codeCounter(status).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *Metrics) codeCounter(status int) prometheus.Counter {
	if status < 0 || status >= len(m.byCode) {
		return m.requests.WithLabelValues(strconv.Itoa(status))
	}
	if c := m.byCode[status].Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(strconv.Itoa(status))
	m.byCode[status].Store(&c)
	return c
}

// UpstreamError counts a failed upstream exchange.
func (m *Metrics) UpstreamError(kind string) { m.upstreamErrs.WithLabelValues(kind).Inc() }

// RateLimited counts a rejection by tier.
func (m *Metrics) RateLimited(tier ratelimit.Tier) { m.rateLimited.WithLabelValues(string(tier)).Inc() }

// Refused counts an error the proxy answered itself.
func (m *Metrics) Refused(status int) { m.refused.WithLabelValues(strconv.Itoa(status)).Inc() }

// ClientError counts an exchange the client broke.
func (m *Metrics) ClientError(kind string) { m.clientErrs.WithLabelValues(kind).Inc() }

// GaugeFunc registers a gauge whose value is read at scrape time.
func (m *Metrics) GaugeFunc(name, help string, labels prometheus.Labels, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// CounterFunc registers a counter whose value is read at scrape time.
func (m *Metrics) CounterFunc(name, help string, labels prometheus.Labels, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// Counter registers and returns a plain counter.
func (m *Metrics) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.Registry.MustRegister(c)
	return c
}
