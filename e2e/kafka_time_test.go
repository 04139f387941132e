package e2e

// End-to-end tests of reading a window of time: --from and --until, against
// a topic whose records carry known timestamps.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceTimed writes records 0-(n-1) to partition p, two by two with the
// same timestamp, a minute apart from first: records 2i and 2i+1 at
// first+i minutes. Record i has offset i and value value(p, i).
func produceTimed(t *testing.T, addr, topic string, p int32, n int, first time.Time) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(value(p, i)),
			Timestamp: first.Add(time.Duration(i/2) * time.Minute)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// --from TIME --until TIME delivers exactly the records of the window, per
// the broker's timestamp index: from the first record at or after --from
// to the last before the first at or after --until, in each partition;
// records at the same time as either bound fall on the same side of it. A
// partition with no record in the window is done at once. With --group,
// the commits end at the window's end; a partition with no record in it
// commits nothing.
func TestKafkaTimeWindow(t *testing.T) {
	k := newKafka(t, 2)
	// Within the broker's retention, and well before now, for the
	// relative times.
	base := time.Now().Add(-40 * time.Hour).Truncate(time.Minute)
	produceTimed(t, k.addr, k.topic, 0, 100, base)                      // base to base+49m
	produceTimed(t, k.addr, k.topic, 1, 100, base.Add(100*time.Minute)) // base+100m to base+149m
	at := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339Nano) }
	type span struct{ lo, hi int64 } // offsets [lo, hi)
	for _, tc := range []struct {
		name, from, until string
		want              [2]span
	}{
		// Records 20 and 21 are at base+10m, 40 and 41 at base+20m.
		{"boundaries", at(10 * time.Minute), at(20 * time.Minute), [2]span{{20, 40}, {0, 0}}},
		{"both partitions", at(40 * time.Minute), at(110 * time.Minute), [2]span{{80, 100}, {0, 20}}},
		{"between records", at(10*time.Minute + 10*time.Second), at(10*time.Minute + 50*time.Second), [2]span{{22, 22}, {0, 0}}},
		{"before the first record", at(-2 * time.Hour), at(-time.Hour), [2]span{{0, 0}, {0, 0}}},
		{"past the end", at(5 * time.Hour), at(6 * time.Hour), [2]span{{100, 100}, {100, 100}}},
		{"until only", "", at(30*time.Second + 105*time.Minute), [2]span{{0, 100}, {0, 12}}},
		// Resolved at start, a few seconds after base+40h: base+60m and
		// a little, between the partitions' records.
		{"relative", "-48h", "-39h", [2]span{{0, 100}, {0, 0}}},
	} {
		for _, group := range []string{"", k.name(strings.ReplaceAll(tc.name, " ", "-"))} {
			t.Run(fmt.Sprintf("%s/group=%v", tc.name, group != ""), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out")
				args := []string{"--kafka-brokers", k.addr, "--topic", k.topic, "--until", tc.until, "-n", "7", "file", out}
				if tc.from != "" {
					args = append([]string{"--from", tc.from}, args...)
				}
				if group != "" {
					args = append([]string{"--group", group}, args...)
				}
				r := run(t, nil, args...)
				n := tc.want[0].hi - tc.want[0].lo + tc.want[1].hi - tc.want[1].lo
				drained := fmt.Sprintf("drained %d records from 1 topic, lag 0", n)
				if r.code != 0 || !strings.Contains(r.stderr, drained) {
					t.Fatalf("exit %d, want 0 and %q:\n%s", r.code, drained, r.stderr)
				}
				d := delivered{}
				d.add(t, fileLines(t, out)...)
				from, to := make(map[int32]int64), make(map[int32]int)
				for p, s := range tc.want {
					if s.hi > s.lo {
						from[int32(p)], to[int32(p)] = s.lo, int(s.hi)
					}
				}
				wantExactly(t, d, from, to)
				if group == "" {
					return
				}
				for p, o := range committedOffsets(t, k.addr, k.topic, group, []int32{0, 1}) {
					want := int64(0) // nothing committed
					if s := tc.want[p]; s.hi > s.lo {
						want = s.hi
					}
					if o != want {
						t.Errorf("partition %d: committed %d, want %d", p, o, want)
					}
				}
			})
		}
	}
}

// A group reads windows one after another: each run starts where the last
// committed and ends at its --until, so together they deliver every record
// once.
func TestKafkaTimeWindowsInTurn(t *testing.T) {
	k := newKafka(t, 1)
	base := time.Now().Add(-40 * time.Hour).Truncate(time.Minute)
	produceTimed(t, k.addr, k.topic, 0, 100, base)
	d := delivered{}
	for i, until := range []time.Duration{10 * time.Minute, 10 * time.Minute, 25 * time.Minute, 3 * time.Hour} {
		out := filepath.Join(t.TempDir(), "out")
		r := run(t, nil, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group,
			"--until", base.Add(until).Format(time.RFC3339), "-n", "7", "file", out)
		if r.code != 0 || !strings.Contains(r.stderr, "lag 0") {
			t.Fatalf("run %d: exit %d:\n%s", i, r.code, r.stderr)
		}
		d.add(t, fileLines(t, out)...)
		want := min(int64(until/time.Minute)*2, 100)
		if o := committedOffsets(t, k.addr, k.topic, k.group, []int32{0})[0]; o != want {
			t.Fatalf("run %d, --until base+%v: committed %d, want %d", i, until, o, want)
		}
	}
	wantExactly(t, d, nil, map[int32]int{0: 100})
}
