package monitor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// PartitionLag is one Kafka partition's consumer lag: the Kafka source
// reports it in this form.
type PartitionLag struct {
	Topic     string
	Partition int32
	Lag       int64
}

// Metrics exports a run's counters in the Prometheus format. The counters
// are read from the pipeline at scrape time, so delivery pays nothing for
// them; only the per-batch histograms are fed as batches settle.
type Metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	records  prometheus.Histogram
	settled  *prometheus.CounterVec

	collector *statsCollector
}

// WithGroup adds the consumer group member's state to the metrics.
func (m *Metrics) WithGroup(group func() GroupState) *Metrics {
	m.collector.group = group
	return m
}

// NewMetrics registers batchpipe's metrics, each labelled with the sink.
// lag may be nil.
func NewMetrics(sink string, stats func() batcher.Stats, lag func() []PartitionLag) *Metrics {
	labels := prometheus.Labels{"sink": sink}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "batchpipe_batch_duration_seconds",
			Help:        "Time from a batch's first delivery attempt to its last, by outcome.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"outcome"}),
		records: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "batchpipe_batch_records",
			Help:        "Records per batch.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(1, 4, 10),
		}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "batchpipe_batches_settled_total",
			Help:        "Batches whose fate is known, by outcome (delivered, partial, dead-lettered, failed, abandoned).",
			ConstLabels: labels,
		}, []string{"outcome"}),
	}
	m.collector = &statsCollector{labels: labels, stats: stats, lag: lag}
	m.reg.MustRegister(m.duration, m.records, m.settled, m.collector)
	return m
}

// Observe records a settled batch; it fits batcher.Config.OnSettled.
func (m *Metrics) Observe(s batcher.Settlement) {
	o := s.Outcome.String()
	m.settled.WithLabelValues(o).Inc()
	m.duration.WithLabelValues(o).Observe(s.Duration.Seconds())
	m.records.Observe(float64(s.Batch.Len()))
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve listens on addr and serves the metrics at /metrics. It returns the
// address it listens on (useful with port 0) and a function that stops it.
func (m *Metrics) Serve(addr string) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln) // returns ErrServerClosed once stopped
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}
	return ln.Addr().String(), stop, nil
}

// statsCollector turns a pipeline's counters into metrics when scraped.
type statsCollector struct {
	labels prometheus.Labels
	stats  func() batcher.Stats
	lag    func() []PartitionLag
	group  func() GroupState // nil without a group
}

func (c *statsCollector) desc(name, help string, vars ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, vars, c.labels)
}

func (c *statsCollector) descs() map[string]*prometheus.Desc {
	return map[string]*prometheus.Desc{
		"read":        c.desc("batchpipe_records_read_total", "Records read from the source."),
		"bytesRead":   c.desc("batchpipe_bytes_read_total", "Bytes read, delimiters included."),
		"delivered":   c.desc("batchpipe_records_delivered_total", "Records delivered to the sink."),
		"dead":        c.desc("batchpipe_records_dead_lettered_total", "Records written to the dead letter."),
		"undelivered": c.desc("batchpipe_records_undelivered_total", "Records neither delivered nor dead-lettered."),
		"inFlight":    c.desc("batchpipe_records_in_flight", "Records in batches not yet settled."),
		"batches":     c.desc("batchpipe_batches_total", "Batches flushed, by reason.", "reason"),
		"retries":     c.desc("batchpipe_retries_total", "Delivery attempts after the first."),
		"lag":         c.desc("batchpipe_kafka_lag", "Records in the partition not yet delivered or dead-lettered (up to the end offset with --until-end).", "topic", "partition"),
		"generation":  c.desc("batchpipe_kafka_group_generation", "The consumer group generation this member is in."),
		"assigned":    c.desc("batchpipe_kafka_group_assigned_partitions", "Partitions the group assigns this member now."),
		"rebalances":  c.desc("batchpipe_kafka_group_rebalances_total", "Group generations this member joined after its first."),
		"paused":      c.desc("batchpipe_kafka_group_rebalance_pause_seconds_total", "Time reading stood still for rebalances (eager: all partitions; cooperative: those revoked)."),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.descs()
	st := c.stats()
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	counter(d["read"], st.Read)
	counter(d["bytesRead"], st.BytesRead)
	counter(d["delivered"], st.Delivered)
	counter(d["dead"], st.DeadLettered)
	counter(d["undelivered"], st.Undelivered)
	counter(d["retries"], st.Retries)
	ch <- prometheus.MustNewConstMetric(d["inFlight"], prometheus.GaugeValue, float64(st.InFlight))
	for reason, n := range st.Reasons {
		counter(d["batches"], n, reason)
	}
	if c.group != nil {
		g := c.group()
		ch <- prometheus.MustNewConstMetric(d["generation"], prometheus.GaugeValue, float64(g.Generation))
		ch <- prometheus.MustNewConstMetric(d["assigned"], prometheus.GaugeValue, float64(len(g.Partitions)))
		counter(d["rebalances"], g.Rebalances)
		ch <- prometheus.MustNewConstMetric(d["paused"], prometheus.CounterValue, g.Paused.Seconds())
	}
	if c.lag != nil {
		for _, l := range c.lag() {
			ch <- prometheus.MustNewConstMetric(d["lag"], prometheus.GaugeValue, float64(l.Lag),
				l.Topic, strconv.Itoa(int(l.Partition)))
		}
	}
}
