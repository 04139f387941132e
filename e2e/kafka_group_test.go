package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	// env: print the names and values of the BATCHPIPE_ variables.
	children["env"] = func([]string) int {
		io.Copy(io.Discard, os.Stdin)
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "BATCHPIPE_") && !strings.HasPrefix(kv, "BATCHPIPE_TEST_CHILD=") {
				fmt.Println(kv)
			}
		}
		return 0
	}
	// append OUT: append stdin to OUT in one write, as a loader into a
	// table would insert the batch in one transaction.
	children["append"] = func(args []string) int {
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		return appendTo(args[0], in)
	}
}

// Three members of a group drain a topic, each joining once the one before
// it has delivered a batch: every rebalance comes while batches are queued
// and in flight. Every record is delivered exactly once, whatever the
// timing, and every member exits 0.
func TestKafkaGroupJoinsDeliverOnce(t *testing.T) {
	const runs = 4
	for i := range runs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			k := newKafka(t, 4)
			addr := k.addr
			newProducer(t, addr).produce(k.topic, parts4, 25000)
			dir := t.TempDir()
			var members []*proc
			var outs []string
			defer func() {
				if !t.Failed() {
					return
				}
				// Everything each member said, with times: how a record
				// came twice, or who held what when one did not finish.
				for m, p := range members {
					t.Logf("member %d:\n%s", m, p.stderr())
				}
			}()
			// No member dies here, so the session can be long: on a
			// loaded machine a 1s one runs out now and then (a broker
			// answers heartbeats behind the member's fetches), and the
			// group drops the member before it knows, a duplicate the
			// README states. 6s is Kafka's smallest default.
			const session = "6s"
			// A member whose run is over while the group rebalances exits
			// with its join unanswered, leaving the group on a connection
			// of its own. Should that leave be lost, Kafka gives up on the
			// member after its session timeout; kfake, when the join's
			// answer could not be sent, only after the rebalance timeout
			// (60s by default): the others, waiting that long for a dead
			// leader's assignment, would not exit within the minute.
			const rebalance = "15s"
			for m := range 3 {
				out := filepath.Join(dir, fmt.Sprintf("out%d", m))
				outs = append(outs, out)
				args := []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end",
					"-n", "500", "-j", "4", "--kafka-session-timeout", session, "--kafka-rebalance-timeout", rebalance, "exec", "--"}
				p := start(t, append(append(args, childCmd(t, "append")...), out)...)
				members = append(members, p)
				switch m {
				case 0:
					p.waitFor("outcome=delivered")
				case 1:
					// Not a delivery: the first member may have drained
					// every partition by now, and this one then has
					// nothing to deliver.
					p.waitFor("kafka: assigned")
				}
			}
			d := delivered{}
			withdrawn := 0
			for m, p := range members {
				if code := p.wait(); code != 0 {
					t.Fatalf("member %d: exit %d:\n%s", m, code, p.stderr())
				}
				if _, err := os.Stat(outs[m]); err == nil {
					d.add(t, fileLines(t, outs[m])...)
				}
				withdrawn += strings.Count(p.stderr(), "msg=withdrawn")
			}
			wantExactly(t, d, nil, each(parts4, 25000))
			t.Logf("batches with records withdrawn: %d", withdrawn)
		})
	}
}

// Ten members killed (SIGKILL) one after the other, each as soon as it
// has joined, while the group still counts the ones before: every join
// waits at the coordinator for members that will never rejoin, up to the
// rebalance timeout, and must not fail at the read timeout and start
// again. A drain after them gets every partition, once the group has
// given up on the dead, and finishes within the session timeout plus 30s.
// (Killed in the middle of a join, a member stays in kfake's group for
// good: kfake cannot play that part; TestConnReadTimeoutOutlastsJoins
// checks the read timeout.)
func TestKafkaJoinsAfterKills(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 2500)
	args := []string{"--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--kafka-session-timeout", "2s",
		"--kafka-rebalance-timeout", "5s"}
	for range 10 {
		p := start(t, append(args, "-v", "file", os.DevNull)...)
		p.waitFor("kafka: assigned")
		p.signal(syscall.SIGKILL)
		p.wait()
	}
	out := filepath.Join(t.TempDir(), "out")
	at := time.Now()
	r := run(t, nil, append(args, "--until-end", "-n", "1000", "file", out)...)
	took := time.Since(at)
	if r.code != 0 {
		t.Fatalf("drain: exit %d after %v:\n%s", r.code, took, r.stderr)
	}
	d := delivered{}
	d.add(t, fileLines(t, out)...)
	wantExactly(t, d, nil, each(parts4, 2500))
	if took > 2*time.Second+30*time.Second {
		t.Fatalf("the drain took %v, want at most the session timeout plus 30s:\n%s", took, r.stderr)
	}
	t.Logf("the drain took %v", took)
}

// A group drain is over only when every partition of the topic is, not
// just this member's: partitions a killed member held are waited for until
// the group gives up on it, and read; partitions a live member holds and
// never commits make the drain fail after --kafka-timeout, naming them,
// with their records in the lag.
func TestKafkaGroupDrainWaitsForEveryPartition(t *testing.T) {
	t.Run("a member killed", func(t *testing.T) {
		k := newKafka(t, 4)
		addr := k.addr
		newProducer(t, addr).produce(k.topic, parts4, 2500)
		f := newFIFO(t) // never read: the member delivers nothing
		args := []string{"--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--kafka-session-timeout", "2s",
			"--kafka-rebalance-timeout", "3s"}
		dead := start(t, append(args, "-v", "file", f.path)...)
		dead.waitFor("kafka: assigned")
		dead.signal(syscall.SIGKILL)
		dead.wait()
		out := filepath.Join(t.TempDir(), "out")
		r := run(t, nil, append(args, "--until-end", "-n", "1000", "file", out)...)
		if r.code != 0 || !strings.Contains(r.stderr, "drained 10000 records from 1 topic, lag 0") {
			t.Fatalf("exit %d, want 0 and drained:\n%s", r.code, r.stderr)
		}
		d := delivered{}
		d.add(t, fileLines(t, out)...)
		wantExactly(t, d, nil, each(parts4, 2500))
	})
	t.Run("a member that never commits", func(t *testing.T) {
		k := newKafka(t, 4)
		addr := k.addr
		newProducer(t, addr).produce(k.topic, parts4, 2500)
		taken := joinGroup(t, k)
		out := filepath.Join(t.TempDir(), "out")
		r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "1000",
			"--kafka-session-timeout", "2s", "--kafka-timeout", "3s", "file", out)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
		}
		// The idle member took every partition, and kept some at the
		// rebalance: those are named, and none of their records read.
		d := delivered{}
		d.add(t, fileLines(t, out)...)
		var held, ours []int32
		var named []string
		for _, p := range parts4 {
			if len(d[p]) == 0 {
				held = append(held, p)
				named = append(named, fmt.Sprintf("%s[%d] at 0 of 2500", k.topic, p))
			} else {
				ours = append(ours, p)
			}
		}
		wantExactly(t, d, nil, each(ours, 2500))
		want := "not drained: " + strings.Join(named, ", ") + " held by other members"
		lag := fmt.Sprintf("lag %d", 2500*len(held))
		if len(held) == 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, lag) {
			t.Fatalf("want %q and %q (the idle member took %v at first):\n%s", want, lag, taken, r.stderr)
		}
	})
}

// A member started while another that stopped holds the partitions waits
// for the group to give up on it: it says what it waits for, rather than
// nothing for the session timeout. The stopped member's session is long,
// so that the wait outlasts the notice however slow the machine; once the
// notice is out, the member goes on and stops, and the drain finishes.
func TestKafkaGroupWaitSaysWhy(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 100)
	args := []string{"--kafka-brokers", addr, "--topic", k.topic, "--group", k.group}
	stopped := start(t, append(args, "-v", "--kafka-session-timeout", "60s", "file", os.DevNull)...)
	stopped.waitFor("kafka: assigned")
	stopped.signal(syscall.SIGSTOP)
	out := filepath.Join(t.TempDir(), "out")
	drain := start(t, append(args, "--kafka-session-timeout", "6s", "--until-end", "file", out)...)
	drain.waitFor("kafka: waiting for the group to assign partitions: a member that stopped may hold partitions until its session times out, 6s")
	stopped.signal(syscall.SIGCONT)
	stopped.signal(syscall.SIGTERM)
	if code := stopped.wait(); code != 143 {
		t.Fatalf("the stopped member: exit %d, want 143:\n%s", code, stopped.stderr())
	}
	if code := drain.wait(); code != 0 {
		t.Fatalf("the drain: exit %d, want 0:\n%s", code, drain.stderr())
	}
}

// Brokers lost for good after the group session ended, so that this member
// holds no partitions when it gives up: the lag still counts every record
// not delivered.
func TestKafkaBrokerLostAfterSession(t *testing.T) {
	t.Parallel() // it waits on its own broker and on session timeouts
	k := ownKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 50000)
	f := newFIFO(t)
	p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", "500", "--kafka-timeout", "4s",
		"--kafka-session-timeout", "1s", "--kafka-rebalance-timeout", "1s", "file", f.path)
	p.waitFor("kafka: assigned")
	lines := f.read(1000)
	said := p.lineCount()
	k.stop()
	p.waitSince(said, "kafka: revoked") // not a revoke of a session before
	lines = append(lines, f.readWhile(p)...)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.stderr())
	}
	summary := p.waitFor("records read from 1 topic, lag ")
	lag, _ := strconv.Atoi(summary[strings.LastIndex(summary, " ")+1:])
	d := delivered{}
	d.add(t, lines...)
	if lag < 200000-d.count() {
		t.Fatalf("%d records delivered and a lag of %d, want at least the rest of 200000:\n%s", d.count(), lag, p.stderr())
	}
}

// The commands the exec sink runs are not given batchpipe's secrets: the
// Kafka password, headers, anything named for a password or token. (Were
// one printed, TestMain would fail the run too.)
func TestExecChildGetsNoSecrets(t *testing.T) {
	t.Setenv("BATCHPIPE_KAFKA_PASSWORD", "s3cret-pass")
	t.Setenv("BATCHPIPE_HEADER", "Authorization: Bearer TOKEN-e2e-1")
	t.Setenv("BATCHPIPE_SASL_TOKEN", "PASS-e2e-2")
	t.Setenv("BATCHPIPE_MAX_RECORDS", "2")
	r := run(t, strings.NewReader("a\nb\n"), append([]string{"exec", "--"}, childCmd(t, "env")...)...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	for _, secret := range []string{"PASSWORD", "HEADER", "TOKEN"} {
		if strings.Contains(r.stdout, secret) {
			t.Errorf("the command was given a secret:\n%s", r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "BATCHPIPE_MAX_RECORDS=2\n") || !strings.Contains(r.stdout, "BATCHPIPE_SEQ=1\n") {
		t.Errorf("the command was not given the rest:\n%s", r.stdout)
	}
}
