package main

// End-to-end tests of batchpipe's manners: exit statuses, secrets,
// per-batch names, the status line and the messages people read.

import (
	"net"
	"os"
	"strings"
	"testing"
)

const helpHint = "Run 'batchpipe --help' for usage."

// Exit 2 is for mistakes in the command, with the --help hint only for
// the command line itself; a dependency missing at start is exit 69.
func TestExitStatusSeparatesUsageFromOutage(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	_, kafka := kafkaCluster(t, 1)
	dir := t.TempDir()

	for _, tc := range []struct {
		name string
		args []string
		code int
		hint bool
		want string
	}{
		{"unknown flag", []string{"--max-recrods", "5", "file", "-"}, 2, true, "unknown flag"},
		{"bad value", []string{"-n", "0", "file", "-"}, 2, true, "--max-records"},
		{"directory as output", []string{"file", dir}, 2, false, dir},
		{"metrics port taken", []string{"--metrics-addr", taken.Addr().String(), "file", os.DevNull}, 69, false, "address already in use"},
		{"brokers unreachable", []string{"--kafka-brokers", closedAddr, "--topic", "t", "--kafka-timeout", "1s", "file", "-"}, 69, false, "connect to " + closedAddr},
		{"topic missing", []string{"--kafka-brokers", kafka, "--topic", "nosuch", "--until-end", "file", "-"}, 69, false, `"nosuch"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, strings.NewReader("a\n"), tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want %d saying %q; stderr:\n%s", r.code, tc.code, tc.want, r.stderr)
			}
			if got := strings.Contains(r.stderr, helpHint); got != tc.hint {
				t.Errorf("--help hint shown: %v, want %v; stderr:\n%s", got, tc.hint, r.stderr)
			}
		})
	}
}
