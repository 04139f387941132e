package cmd

import (
	"slices"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/sinks"
)

func TestExecCommandLine(t *testing.T) {
	for _, args := range [][]string{
		{"exec", "--", "wc", "-l"},
		{"exec", "wc", "-l"}, // flags after the command are the command's
		{"-n", "3", "exec", "--keep-order", "-j", "2", "--timeout", "1s", "--", "true"},
		{"exec", "--args", "--", "echo", "{}"},
	} {
		_, s, stderr, code := parse(t, args...)
		if _, ok := s.(*sinks.Exec); !ok || code != exitOK {
			t.Errorf("%q: exit %d, sink %T: %s", args, code, s, stderr)
		}
	}
}

func TestExecUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"exec"}, "no command given"},
		{[]string{"exec", "--"}, "no command given"},
		{[]string{"exec", "--", "batchpipe-no-such-command"}, `cannot run "batchpipe-no-such-command": executable file not found`},
		{[]string{"exec", "--timeout", "-1s", "--", "true"}, "--timeout must not be negative"},
		{[]string{"exec", "--kill-after", "0", "--", "true"}, "--kill-after must be positive"},
	} {
		_, _, stderr, code := parse(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tt.args, code, stderr, tt.want)
		}
	}
}

// --args tightens --max-bytes to the command line's room and counts each
// argument's pointer and NUL; without --args nothing changes.
func TestExecArgsLimitBatches(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		maxBytes int // 0: less than the 64 MiB asked for
		overhead bool
	}{
		{[]string{"exec", "--", "true"}, 1 << 20, false},
		{[]string{"-b", "1KiB", "exec", "--args", "--", "true"}, 1 << 10, true},
		{[]string{"-b", "64MiB", "exec", "--args", "--", "true"}, 0, true},
	} {
		cfg, s, stderr, code := parse(t, tt.args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d: %s", tt.args, code, stderr)
		}
		cfg = withSinkLimits(cfg, s)
		if tt.maxBytes > 0 && cfg.MaxBytes != tt.maxBytes || tt.maxBytes == 0 && cfg.MaxBytes >= 64<<20 {
			t.Errorf("%q: max bytes %d", tt.args, cfg.MaxBytes)
		}
		if (cfg.PerRecordOverhead > 0) != tt.overhead {
			t.Errorf("%q: per-record overhead %d", tt.args, cfg.PerRecordOverhead)
		}
	}
}

func TestChildEnvHasNoSecrets(t *testing.T) {
	in := []string{"PATH=/bin", "BATCHPIPE_KAFKA_PASSWORD=pw", "BATCHPIPE_HEADER=Authorization: Bearer t",
		"BATCHPIPE_MAX_RECORDS=5", "BATCHPIPE_SCHEMA_REGISTRY_TOKEN=x", "MY_PASSWORD=mine", "BATCHPIPE_KAFKA_USER=u"}
	got := childEnv(in)
	want := []string{"PATH=/bin", "BATCHPIPE_MAX_RECORDS=5", "MY_PASSWORD=mine", "BATCHPIPE_KAFKA_USER=u"}
	if !slices.Equal(got, want) {
		t.Fatalf("childEnv = %q, want %q", got, want)
	}
}
