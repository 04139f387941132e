package e2e

// The Kafka sink through broker outages: the broker of the test's own is
// stopped for a minute and more while stdin keeps coming, and started
// again on the same port and data.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stdin → Kafka with the broker gone for 60 s, then for 120 s (on kfake,
// in make test, once for 60 s): the records read meanwhile are delivered
// once it is back, each once and in input order within its partition, and
// the run exits 0. Before, a producer id asked for during the outage
// dropped every seed broker for good ("client has run out of available
// brokers to talk to"), and the run failed.
func TestKafkaOutageSinkCatchesUp(t *testing.T) {
	// It waits out its outages: in parallel with the tests that wait on
	// session timeouts; make test runs it in a process of its own.
	t.Parallel()
	k := ownKafka(t, 4)
	outages := []time.Duration{60 * time.Second, 120 * time.Second}
	if !k.real() {
		outages = []time.Duration{60 * time.Second}
	}
	p := start(t, "-v", "-n", "100", "-t", "100ms", "--kafka-timeout", "5m", "kafka", "--brokers", k.addr, k.topic)

	// The feeder writes numbered lines at a steady pace until stopped;
	// its writes block while batchpipe holds all it may.
	stop, fed := make(chan struct{}), make(chan int, 1)
	go func() {
		n := 0
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		defer func() { fed <- n }()
		for {
			var b strings.Builder
			for range 20 {
				fmt.Fprintf(&b, "%08d\n", n)
				n++
			}
			if _, err := p.stdin.Write([]byte(b.String())); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	deliveredAfter := func(what string, before int) int {
		var n int
		p.waitForLines(what, func(lines []string) bool {
			n = countDelivered(lines)
			return n > before+5
		})
		return n
	}

	n := deliveredAfter("batches delivered at start", 0)
	for _, outage := range outages {
		k.stop()
		down := time.NewTimer(outage)
		<-down.C
		k.restart()
		n = deliveredAfter(fmt.Sprintf("batches delivered after an outage of %v", outage), n)
	}
	close(stop)
	total := <-fed
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, p.stderr())
	}

	seen := make([]bool, total)
	for part, msgs := range byPartition(t, k.addr, k.topic) {
		last := -1
		for _, m := range msgs {
			i, err := strconv.Atoi(string(m.Value))
			if err != nil || i >= total {
				t.Fatalf("partition %d offset %d: %q is not an input line", part, m.Offset, m.Value)
			}
			if seen[i] {
				t.Fatalf("line %d produced twice", i)
			}
			if i < last {
				t.Fatalf("partition %d: line %d after line %d", part, i, last)
			}
			seen[i], last = true, i
		}
	}
	missing := 0
	for _, ok := range seen {
		if !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d lines not produced:\n%s", missing, total, p.stderr())
	}
	t.Logf("%d lines, each produced once, through outages of %v", total, outages)
}

// countDelivered counts the batches logged (-v) as delivered.
func countDelivered(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, " outcome=delivered") {
			n++
		}
	}
	return n
}
