package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// assignedLine returns the last "kafka: assigned" line of lines with at
// least one partition, or "".
func assignedLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "kafka: assigned") && !strings.Contains(lines[i], " count=0 ") {
			return lines[i]
		}
	}
	return ""
}

var partRE = regexp.MustCompile(`\[(\d+)\]`)

// assignedParts returns the partitions an assigned line names, sorted.
func assignedParts(line string) []string {
	var ps []string
	for _, m := range partRE.FindAllStringSubmatch(line, -1) {
		ps = append(ps, m[1])
	}
	slices.Sort(ps)
	return ps
}

// A static member killed with SIGKILL and started again under the same
// --group-instance-id, within the session timeout, gets its own partitions
// back in the same generation: the group does not rebalance, and the other
// member reads on without a pause. Were there a rebalance, the other
// member would have to rejoin (logging the revoke first) before the group
// could assign the restarted one anything: the order is causal, not timed.
func TestKafkaStaticMemberRestartsWithoutRebalance(t *testing.T) {
	k := newKafka(t, 4)
	newProducer(t, k.addr).produce(k.topic, parts4, 1000)
	args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group,
		"--kafka-session-timeout", "10s", "--kafka-rebalance-timeout", "10s", "-n", "100"}
	stats := filepath.Join(t.TempDir(), "stats.json")
	member := func(id string, more ...string) *proc {
		return start(t, append(append(args, more...), "--group-instance-id", id, "file", os.DevNull)...)
	}
	a, b := member("a"), member("b", "--stats-file", stats)
	a.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	b.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	aLine := assignedLine(strings.Split(a.stderr(), "\n"))
	gen, _ := logValue(aLine, "generation")
	// b may have shown a share of two in an earlier generation.
	b.waitForLines("generation "+gen, func(l []string) bool {
		g, _ := logValue(assignedLine(l), "generation")
		return g == gen
	})
	bLines := len(strings.Split(b.stderr(), "\n"))
	// The other member's rebalances so far: it may have joined alone and
	// rebalanced once when a joined. Its stats are those of the generation
	// its log names.
	b.signal(syscall.SIGUSR2)
	b.waitFor("stats file written")
	g0, rebalances := groupStats(t, stats)
	if fmt.Sprint(g0) != gen {
		t.Fatalf("the other member's stats say generation %d after its log said %s", g0, gen)
	}

	a.signal(syscall.SIGKILL)
	a.wait()
	a2 := member("a")
	a2.waitForLines("its partitions", func(l []string) bool { return assignedLine(l) != "" })
	a2Line := assignedLine(strings.Split(a2.stderr(), "\n"))
	if g, _ := logValue(a2Line, "generation"); g != gen {
		t.Errorf("restarted in generation %s, want %s (no rebalance):\n%s\n%s", g, gen, aLine, a2Line)
	}
	if got, want := assignedParts(a2Line), assignedParts(aLine); !slices.Equal(got, want) {
		t.Errorf("restarted with partitions %v, want its own %v", got, want)
	}
	for _, l := range strings.Split(b.stderr(), "\n")[bLines:] {
		if strings.Contains(l, "kafka: revoked") || strings.Contains(l, "kafka: assigned") {
			t.Errorf("the other member paused: %s", l)
		}
	}
	for _, p := range []*proc{a2, b} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 143 {
			t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
		}
	}
	// The other member's own account: still the generation it joined,
	// with no rebalance since the kill.
	g, n := groupStats(t, stats)
	if fmt.Sprint(g) != gen || n != rebalances {
		t.Errorf("the other member's stats say generation %d and %d rebalances, want %s and %d", g, n, gen, rebalances)
	}
}

// groupStats reads a member's generation and rebalances from its stats file.
func groupStats(t *testing.T, path string) (generation int32, rebalances int64) {
	t.Helper()
	var r struct {
		Group *struct {
			Generation int32 `json:"generation"`
			Rebalances int64 `json:"rebalances"`
		} `json:"kafka_group"`
	}
	if err := json.Unmarshal([]byte(readFile(t, path)), &r); err != nil || r.Group == nil {
		t.Fatalf("stats file: %v:\n%s", err, readFile(t, path))
	}
	return r.Group.Generation, r.Group.Rebalances
}

// Two members started with one --group-instance-id: the group keeps the
// newer and fences the older, which says so and exits 2, and is not left
// consuming beside it.
func TestKafkaDuplicateInstanceIDIsFenced(t *testing.T) {
	k := newKafka(t, 2)
	newProducer(t, k.addr).produce(k.topic, []int32{0, 1}, 100)
	args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group,
		"--kafka-session-timeout", "6s", "--group-instance-id", "twin", "file", os.DevNull}
	first := start(t, args...)
	first.waitForLines("its partitions", func(l []string) bool { return assignedCount(l) == 2 })
	second := start(t, args...)
	second.waitForLines("its partitions", func(l []string) bool { return assignedCount(l) == 2 })
	if code := first.wait(); code != 2 {
		t.Fatalf("the fenced member: exit %d, want 2:\n%s", code, first.stderr())
	}
	if !strings.Contains(first.stderr(), `another member joined with --group-instance-id "twin"`) {
		t.Errorf("the fenced member does not say why:\n%s", first.stderr())
	}
	second.signal(syscall.SIGTERM)
	if code := second.wait(); code != 143 {
		t.Fatalf("the newer member: exit %d, want 143:\n%s", code, second.stderr())
	}
}

// With cooperative-sticky, a member joining takes partitions from the one
// there without stopping the partitions it keeps: the first member revokes
// only those that move, each alone, and its session goes on. Members
// stopped in turn and a drain after them deliver every record exactly
// once: each revoke commits what was delivered.
func TestKafkaCooperativeJoinKeepsPartitions(t *testing.T) {
	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	pr.produce(k.topic, parts4, 5000)
	dir := t.TempDir()
	args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group,
		"--rebalance-strategy", "cooperative-sticky", "--kafka-session-timeout", "6s", "-n", "500", "-j", "4"}
	out := func(m int) string { return filepath.Join(dir, fmt.Sprintf("out%d", m)) }
	p0 := start(t, append(args, "file", out(0))...)
	p0.waitForLines("all four partitions", func(l []string) bool { return assignedCount(l) == 4 })
	p1 := start(t, append(args, "file", out(1))...)
	p1.waitForLines("a partition", func(l []string) bool { return assignedLine(l) != "" })
	pr.produce(k.topic, parts4, 5000) // read by both

	// The first member held all four; the second took some, each revoked
	// alone, and the first never gave up the rest.
	var revoked []string
	for _, l := range strings.Split(p0.stderr(), "\n") {
		if strings.Contains(l, "kafka: revoked") {
			revoked = append(revoked, l)
		}
	}
	moved := 0
	for _, l := range revoked {
		if _, ok := logValue(l, "partition"); ok {
			moved++
		}
	}
	if moved == 0 || moved == 4 || moved != len(revoked) {
		t.Errorf("the first member revoked %d partitions alone, want some but not all, and nothing else:\n%s", moved, strings.Join(revoked, "\n"))
	}
	for _, p := range []*proc{p1, p0} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 143 {
			t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
		}
	}
	if r := run(t, nil, append(slices.Clone(args[1:]), "--until-end", "file", out(2))...); r.code != 0 {
		t.Fatalf("drain: exit %d:\n%s", r.code, r.stderr)
	}
	d := delivered{}
	for m := range 3 {
		if _, err := os.Stat(out(m)); err == nil {
			d.add(t, fileLines(t, out(m))...)
		}
	}
	wantExactly(t, d, nil, each(parts4, 10000))
}

var parts8 = []int32{0, 1, 2, 3, 4, 5, 6, 7}

// rollingScale is the length of the stream TestKafkaRollingRestart
// restarts the group in, and its pace, records a second:
// BATCHPIPE_TEST_ROLLING=RECORDS[,RATE] runs it at another scale by hand
// (1000000 for a million; RATE is by default a 50th of RECORDS, at least
// 4000); CI keeps it small. A rate the members cannot keep up with
// stalls every partition, restarted or not.
func rollingScale(t *testing.T) (records, rate int) {
	t.Helper()
	records = 40000
	if v := os.Getenv("BATCHPIPE_TEST_ROLLING"); v != "" {
		n, r, _ := strings.Cut(v, ",")
		var err error
		if records, err = strconv.Atoi(n); err != nil || records < 400 {
			t.Fatalf("BATCHPIPE_TEST_ROLLING=%q: want RECORDS[,RATE], at least 400 records", v)
		}
		if r != "" {
			if rate, err = strconv.Atoi(r); err != nil || rate < 400 {
				t.Fatalf("BATCHPIPE_TEST_ROLLING=%q: want RECORDS[,RATE], at least 400 a second", v)
			}
		}
	}
	if rate == 0 {
		rate = max(4000, records/50)
	}
	return records, rate
}

// flow produces rounds of per records to every partition of parts, at a
// steady pace, until it has produced total records and stop is closed.
// fifths[i] is closed once (i+1)/5 of total are produced; done then gets
// the error, if any, or nil; acks says when each round was acknowledged,
// to be read once done has answered.
func (pr *producer) flow(topic string, parts []int32, per, total int, stop <-chan struct{}) (fifths []chan struct{}, done <-chan error, acks acked) {
	errc := make(chan error, 1)
	for range 5 {
		fifths = append(fifths, make(chan struct{}))
	}
	acks = acked{}
	for _, p := range parts {
		acks[p] = []ackMark{{next: pr.next[p]}} // produced before: not timed
	}
	ahead := slices.Clone(fifths) // those not yet reached
	go func() {
		tick := time.NewTicker(20 * time.Millisecond) // a pace, not a wait
		defer tick.Stop()
		produced, stopped := 0, false
		for {
			var msgs []*sarama.ProducerMessage
			for _, p := range parts {
				for range per {
					i := pr.next[p]
					pr.next[p]++
					msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder(value(p, i))})
				}
			}
			if err := pr.p.SendMessages(msgs); err != nil {
				errc <- err
				return
			}
			now := time.Now()
			for _, p := range parts {
				acks[p] = append(acks[p], ackMark{next: pr.next[p], at: now})
			}
			produced += len(msgs)
			for len(ahead) > 0 && produced*5 >= total*(6-len(ahead)) {
				close(ahead[0])
				ahead = ahead[1:]
			}
			if stopped && produced >= total {
				errc <- nil
				return
			}
			select {
			case <-stop:
				stopped = true
			case <-tick.C:
			}
		}
	}()
	return fifths, errc, acks
}

// acked says, for each partition, when the broker acknowledged its records
// produced by flow: those below next by at, in order.
type acked map[int32][]ackMark

type ackMark struct {
	next int
	at   time.Time // zero: produced before flow
}

// when returns when record off of partition p was acknowledged, if flow
// produced it.
func (a acked) when(p int32, off int64) (time.Time, bool) {
	ms := a[p]
	i := sort.Search(len(ms), func(i int) bool { return int64(ms[i].next) > off })
	if i == len(ms) || ms[i].at.IsZero() {
		return time.Time{}, false
	}
	return ms[i].at, true
}

// rolling says how a group of 4 is restarted in turn.
type rolling struct {
	name     string
	strategy string
	static   bool // --group-instance-id per member
	exactly  bool // --exactly-once into per-batch files named by offsets
}

// A rolling restart of 4 members over 8 partitions while a stream of
// records flows: each member in turn, once a fifth more of the stream was
// produced, gets SIGTERM and is started again, once the one before is
// back and delivering. With --exactly-once every record lands in exactly
// one file; without, every record is delivered, and the duplicates are
// counted. The longest time a partition went without a delivery during the
// restarts is logged for each way, for the partitions that moved to
// another process and for those their reader kept, the longest a record
// waited to be delivered, and the longest a partition held a record and
// delivered nothing; not asserted: they are measurements, and a loaded
// machine stretches them.
func TestKafkaRollingRestart(t *testing.T) {
	total, rate := rollingScale(t)
	ways := []rolling{
		{"eager", "range", false, true},
		{"cooperative", "cooperative-sticky", false, true},
		{"static", "range", true, true},
		{"cooperative at least once", "cooperative-sticky", false, false},
	}
	gaps := make(map[string]stalls)
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { gaps[w.name] = rollingRestart(t, w, total, rate) })
	}
	for _, w := range ways[:3] {
		g := gaps[w.name]
		t.Logf("%-12s longest a partition went without a delivery %v: moved %v (%d, mean %v), kept %v; partitions stalled (over %v) %d times, %v in all: moved %d, %v, kept %d, %v",
			w.name, g.longest().Round(time.Millisecond), g.moved.longest.Round(time.Millisecond), g.moved.n, g.moved.mean().Round(time.Millisecond),
			g.kept.longest.Round(time.Millisecond), stallGap,
			g.moved.count+g.kept.count, (g.moved.total + g.kept.total).Round(time.Millisecond),
			g.moved.count, g.moved.total.Round(time.Millisecond), g.kept.count, g.kept.total.Round(time.Millisecond))
	}
	for _, w := range ways[:3] {
		g := gaps[w.name]
		t.Logf("%-12s longest a record waited to be delivered %v (median %v); longest a partition held a record and delivered nothing %v (partition %d)", w.name,
			g.waits.longest.Round(time.Millisecond), g.waits.median.Round(time.Millisecond),
			g.waits.idle.Round(time.Millisecond), g.waits.idlePart)
	}
}

func rollingRestart(t *testing.T, w rolling, total, rate int) stalls {
	k := newKafka(t, 8)
	pr := newProducer(t, k.addr)
	pr.produce(k.topic, parts8, 200)
	per := max(1, rate/50/len(parts8)) // each 20ms
	stop := make(chan struct{})
	fifths, flowErr, acks := pr.flow(k.topic, parts8, per, total, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-flowErr
		}
	}()
	out := t.TempDir()
	args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "-n", "200", "-t", "100ms",
		"--commit-interval", "100ms", "--kafka-session-timeout", "6s", "--kafka-rebalance-timeout", "10s", "--rebalance-strategy", w.strategy}
	if w.exactly {
		args = append(args, "--exactly-once")
	}
	var procs []*proc     // every process, in the order started
	var stops []time.Time // each restart's SIGTERM
	member := func(m int) *proc {
		a := slices.Clone(args)
		if w.static {
			a = append(a, "--group-instance-id", fmt.Sprintf("m%d", m))
		}
		if w.exactly {
			a = append(a, "file", "--per-batch", filepath.Join(out, "{partition}", "{first_offset}-{last_offset}"))
		} else {
			a = append(a, "file", filepath.Join(out, fmt.Sprintf("out%d", len(procs))))
		}
		p := start(t, a...)
		procs = append(procs, p)
		return p
	}
	// delivering: the member holds partitions and delivered a batch since.
	delivering := func(lines []string) bool {
		assigned := false
		for _, l := range lines {
			if strings.Contains(l, "kafka: assigned") && !strings.Contains(l, " count=0 ") {
				assigned = true
			}
			if assigned && strings.Contains(l, "outcome=delivered") {
				return true
			}
		}
		return false
	}
	var members []*proc
	for m := range 4 {
		members = append(members, member(m))
	}
	for _, p := range members {
		p.waitForLines("partitions and a delivery", delivering)
	}
	rollFrom := time.Now()
	for m := range members {
		select {
		case <-fifths[m]:
		case err := <-flowErr:
			t.Fatalf("the stream ended before restart %d: %v", m, err)
		}
		// At a random moment of a heartbeat (1s), not in step with the
		// group's: a member learns of a rebalance at its next one.
		<-time.After(rand.N(time.Second))
		stopping := time.Now()
		stops = append(stops, stopping)
		members[m].signal(syscall.SIGTERM)
		if code := members[m].wait(); code != 143 {
			t.Fatalf("member %d: exit %d, want 143:\n%s", m, code, members[m].stderr())
		}
		starting := time.Now()
		members[m] = member(m)
		members[m].waitForLines("partitions and a delivery", delivering)
		assigned := logTime(t, assignedLine(strings.Split(members[m].stderr(), "\n")))
		t.Logf("restart %d: stopped in %v; started again, assigned after %v, delivering after %v", m,
			starting.Sub(stopping).Round(time.Millisecond), assigned.Sub(starting).Round(time.Millisecond), time.Since(starting).Round(time.Millisecond))
	}
	rollTo := time.Now()
	close(stop)
	if err := <-flowErr; err != nil {
		t.Fatal(err)
	}
	n := pr.next[0]
	for m, p := range members {
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 143 {
			t.Fatalf("member %d: exit %d, want 143:\n%s", m, code, p.stderr())
		}
	}
	final := slices.Clone(args[1:])
	if w.exactly {
		final = append(final, "--until-end", "file", "--per-batch", filepath.Join(out, "{partition}", "{first_offset}-{last_offset}"))
	} else {
		final = append(final, "--until-end", "file", filepath.Join(out, "final"))
	}
	if r := run(t, nil, final...); r.code != 0 {
		t.Fatalf("drain: exit %d:\n%s", r.code, r.stderr)
	}
	if !w.exactly {
		d := delivered{}
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			d.add(t, fileLines(t, filepath.Join(out, e.Name()))...)
		}
		dups := 0
		for _, p := range parts8 {
			for i := range n {
				switch c := d[p][int64(i)]; {
				case c == 0:
					t.Fatalf("record %d/%d lost", p, i)
				case c > 1:
					dups += c - 1
				}
			}
		}
		t.Logf("%s: %d records, 0 lost, %d delivered twice", w.name, n*len(parts8), dups)
		// The bound docs/guarantees.md states: a member stopped hands its
		// partitions over with what it delivered committed, unless its
		// batches outlast the wait, a commit fails, or it stalled past its
		// session, each of which it says.
		late := false
		for _, p := range procs {
			e := p.stderr()
			late = late || strings.Contains(e, "gave up waiting for batches in flight") ||
				strings.Contains(e, "kafka: commit, retrying") || strings.Contains(e, "kafka: commit at rebalance")
		}
		if dups > 0 && !late {
			t.Errorf("%d records delivered twice, with every batch handed over in time", dups)
		}
		return stalls{}
	}
	files := checkOffsetFilesOf(t, offsetFiles(t, out), parts8, int64(n))
	st := gaps(t, out, ownersOf(t, procs), rollFrom, rollTo)
	st.waits = waits(t, out, acks, rollFrom, rollTo)
	// Whether the longest stall is a restart's or the machine's: a
	// restart stalls its own partitions, the machine every one.
	near := 0 // the restart whose SIGTERM is nearest
	for i, s := range stops {
		if st.began.Sub(s).Abs() < st.began.Sub(stops[near]).Abs() {
			near = i
		}
	}
	d, when := st.began.Sub(stops[near]).Round(time.Millisecond), "after"
	if d < 0 {
		d, when = -d, "before"
	}
	t.Logf("%s: the longest stall began %v %s restart %d's SIGTERM; %d of %d partitions delivered nothing through it",
		w.name, d, when, near, st.together, len(parts8))
	t.Logf("%s: %d records in %d files, 0 lost, 0 twice; rolling restart %v, longest without a delivery %v (partition %s), longest a record waited %v (partition %d)",
		w.name, n*len(parts8), files, rollTo.Sub(rollFrom).Round(time.Millisecond), st.longest().Round(time.Millisecond), st.part,
		st.waits.longest.Round(time.Millisecond), st.waits.part)
	return st
}

// recordWaits are how long records waited to be delivered: from the broker's
// acknowledgement of a batch's first record to its file's modification
// time. Unlike the gaps between files, they hold no time in which nothing
// was produced to consume (a producer held up by the broker stops every
// partition's files).
type recordWaits struct {
	longest, median time.Duration
	part            int32 // of the longest
	// idle is the longest a partition held an acknowledged record and
	// delivered nothing: a gap between two files, counted from the later
	// batch's first acknowledgement if that came after the earlier file.
	idle     time.Duration
	idlePart int32
}

// waits measures the waits of the batch files written during [from, to].
func waits(t *testing.T, out string, a acked, from, to time.Time) recordWaits {
	t.Helper()
	var rw recordWaits
	var all []time.Duration
	type file struct {
		acked, written time.Time
		ok             bool // acked is known: flow produced its first record
	}
	for p := range a {
		entries, err := os.ReadDir(filepath.Join(out, strconv.Itoa(int(p))))
		if err != nil {
			t.Fatal(err)
		}
		var files []file
		for _, e := range entries {
			f, _, _ := strings.Cut(e.Name(), "-")
			first, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				continue // not a batch file
			}
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			acked, ok := a.when(p, first)
			files = append(files, file{acked, info.ModTime(), ok})
		}
		slices.SortFunc(files, func(x, y file) int { return x.written.Compare(y.written) })
		for i, f := range files {
			if !f.ok || f.written.Before(from) || f.written.After(to) {
				continue
			}
			w := f.written.Sub(f.acked)
			all = append(all, w)
			if w > rw.longest {
				rw.longest, rw.part = w, p
			}
			if i > 0 {
				if idle := f.written.Sub(later(files[i-1].written, f.acked)); idle > rw.idle {
					rw.idle, rw.idlePart = idle, p
				}
			}
		}
	}
	if len(all) > 0 {
		slices.Sort(all)
		rw.median = all[len(all)/2]
	}
	return rw
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// stalls are the times partitions went without a delivery: those read by
// another process after than before (moved), and those read by the same
// (kept).
type stalls struct {
	moved, kept stallCount
	part        string    // the partition of the longest
	began       time.Time // the longest's
	together    int       // partitions that delivered nothing through the longest
	waits       recordWaits
}

type stallCount struct {
	longest time.Duration
	n       int           // gaps
	sum     time.Duration // their sum
	count   int           // gaps over stallGap
	total   time.Duration // their sum
}

func (s stalls) longest() time.Duration { return max(s.moved.longest, s.kept.longest) }

func (c stallCount) mean() time.Duration {
	if c.n == 0 {
		return 0
	}
	return c.sum / time.Duration(c.n)
}

func (c *stallCount) add(g time.Duration) {
	c.longest = max(c.longest, g)
	c.n++
	c.sum += g
	if g > stallGap {
		c.count++
		c.total += g
	}
}

// stallGap is a gap no linger explains (-t 100ms): a partition stood still.
const stallGap = 500 * time.Millisecond

// owners says when each process was assigned each partition: from the
// "kafka: assigned" lines of their logs, in time order per partition.
type owners map[string][]assignedAt

type assignedAt struct {
	at   time.Time
	proc int
}

func ownersOf(t *testing.T, procs []*proc) owners {
	t.Helper()
	o := owners{}
	for i, p := range procs {
		for _, l := range strings.Split(p.stderr(), "\n") {
			if !strings.Contains(l, "kafka: assigned") {
				continue
			}
			at := logTime(t, l)
			for _, part := range assignedParts(l) {
				o[part] = append(o[part], assignedAt{at, i})
			}
		}
	}
	for _, as := range o {
		slices.SortStableFunc(as, func(a, b assignedAt) int { return a.at.Compare(b.at) })
	}
	return o
}

// logTime returns the time of a log line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("log line without a time: %q", line)
	}
	return at
}

// at returns the process last assigned part at or before t, or -1. Only
// one reads a partition at a time: the one before let it go first.
func (o owners) at(part string, t time.Time) int {
	who := -1
	for _, a := range o[part] {
		if a.at.After(t) {
			break
		}
		who = a.proc
	}
	return who
}

// gaps measures the times between two batch files of one partition
// written one after the other (by modification time), the later during
// [from, to], and tells apart those the partition moved over.
func gaps(t *testing.T, out string, o owners, from, to time.Time) stalls {
	t.Helper()
	var st stalls
	dirs, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string][]time.Time{}
	for _, d := range dirs {
		entries, err := os.ReadDir(filepath.Join(out, d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var times []time.Time
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, info.ModTime())
		}
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		written[d.Name()] = times
		for i := 1; i < len(times); i++ {
			if times[i].Before(from) || times[i].After(to) {
				continue
			}
			g := times[i].Sub(times[i-1])
			if g > st.longest() {
				st.part, st.began = d.Name(), times[i-1]
			}
			if o.at(d.Name(), times[i-1]) != o.at(d.Name(), times[i]) {
				st.moved.add(g)
			} else {
				st.kept.add(g)
			}
		}
	}
	end := st.began.Add(st.longest())
	for _, times := range written {
		i := sort.Search(len(times), func(i int) bool { return times[i].After(st.began) }) // its next file
		if i == len(times) || !times[i].Before(end) {
			st.together++
		}
	}
	return st
}
