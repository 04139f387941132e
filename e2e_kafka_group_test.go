package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func init() {
	// append OUT: append stdin to OUT in one write, as a loader into a
	// table would insert the batch in one transaction.
	children["append"] = func(args []string) int {
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return 1
		}
		if _, err := f.Write(in); err != nil {
			return 1
		}
		if f.Close() != nil {
			return 1
		}
		return 0
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
			_, addr := kafkaCluster(t, 4)
			newProducer(t, addr).produce("t", parts4, 25000)
			dir := t.TempDir()
			var members []*proc
			var outs []string
			for m := range 3 {
				out := filepath.Join(dir, fmt.Sprintf("out%d", m))
				outs = append(outs, out)
				args := []string{"-v", "--kafka-brokers", addr, "--topic", "t", "--group", "g", "--until-end",
					"-n", "500", "-j", "4", "--kafka-session-timeout", "1s", "exec", "--"}
				p := start(t, append(append(args, childCmd(t, "append")...), out)...)
				members = append(members, p)
				if m < 2 {
					p.waitFor("outcome=delivered")
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
