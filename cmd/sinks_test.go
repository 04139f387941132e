package cmd

import "testing"

// Each sink's name is its subcommand's, so errors and --help name the
// commands that exist.
func TestSinkCommandsNamed(t *testing.T) {
	o := &options{}
	for _, s := range sinkCommands {
		if got := s.cmd(o).Name(); got != s.name {
			t.Errorf("sinkCommands: %q runs the subcommand %q", s.name, got)
		}
	}
	if len(newRoot(&options{}).Commands()) < len(sinkCommands) {
		t.Error("a sink without its subcommand")
	}
}
