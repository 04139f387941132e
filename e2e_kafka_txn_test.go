package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceTxns writes, with one transactional producer, a transaction per
// entry of commit to each partition listed, n records each: committed ones
// numbered on from pr.next, aborted ones with values that say so. The last
// entry false leaves an abort marker at the end of every partition.
func (pr *producer) produceTxns(addr, topic string, parts []int32, n int, commit []bool) (aborted int) {
	pr.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("txns"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		pr.t.Fatal(err)
	}
	defer cl.Close()
	for ti, ok := range commit {
		if err := cl.BeginTransaction(); err != nil {
			pr.t.Fatal(err)
		}
		var recs []*kgo.Record
		for _, p := range parts {
			for j := range n {
				v := fmt.Sprintf("aborted %d/%d/%d", ti, p, j)
				if ok {
					v = value(p, pr.next[p])
					pr.next[p]++
				} else {
					aborted++
				}
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)})
			}
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			pr.t.Fatal(err)
		}
		end := kgo.TryAbort
		if ok {
			end = kgo.TryCommit
		}
		if err := cl.EndTransaction(context.Background(), end); err != nil {
			pr.t.Fatal(err)
		}
	}
	return aborted
}

// Committed and aborted transactions, the last one aborted: a drain
// delivers exactly the committed records, alone and as a group, and stops
// at the end past the abort marker. --isolation read_uncommitted delivers
// the aborted ones too.
func TestKafkaAbortedTransactionsNotDelivered(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		dirty bool
	}{
		{"alone", nil, false},
		{"group", []string{"--group", "g"}, false},
		{"read_uncommitted", []string{"--isolation", "read_uncommitted"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := kafkaCluster(t, 4)
			pr := newProducer(t, addr)
			aborted := pr.produceTxns(addr, "t", parts4, 100, []bool{true, false, true, true, false, true, false})
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"--kafka-brokers", addr, "--topic", "t", "--until-end", "-n", "150"}, tc.args...)
			r := run(t, nil, append(args, "file", out)...)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			var clean []string
			dirty := 0
			for _, l := range fileLines(t, out) {
				if strings.HasPrefix(l, "aborted ") {
					dirty++
				} else {
					clean = append(clean, l)
				}
			}
			want := 0
			if tc.dirty {
				want = aborted
			}
			if dirty != want {
				t.Fatalf("%d records of aborted transactions delivered, want %d", dirty, want)
			}
			d := delivered{}
			d.add(t, clean...)
			wantExactly(t, d, nil, each(parts4, 400))
			drained := fmt.Sprintf("drained %d records from 1 topic, lag 0", 1600+want)
			if !strings.Contains(r.stderr, drained) {
				t.Fatalf("no %q:\n%s", drained, r.stderr)
			}
		})
	}
}
