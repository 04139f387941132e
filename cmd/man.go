package cmd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manDateless is the date the pages are generated with, taken out again:
// a page that changed with the calendar would always look stale.
var manDateless = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteManPages writes batchpipe(1) and a page for each subcommand (every
// sink) into dir, from the same commands that print --help, so that the
// two never say different things.
func WriteManPages(dir string) error {
	root := newRoot(&options{})
	pages := map[string][]byte{}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		c.DisableAutoGenTag = true // no date in a HISTORY section
		c.Long = manText(c.Long)
		var b bytes.Buffer
		header := &doc.GenManHeader{Section: "1", Date: &manDateless, Source: "batchpipe", Manual: "batchpipe manual"}
		if err := doc.GenMan(c, header, &b); err != nil {
			return fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		pages[name] = bytes.Replace(b.Bytes(), []byte(`"Jan 0001"`), []byte(`""`), 1)
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
				if err := walk(sub); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	for name, page := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), page, 0o644); err != nil {
			return fmt.Errorf("man pages: %w", err)
		}
	}
	return nil
}

// manText is help text as Markdown for the man page: runs of indented
// lines (the exit-status table, lists of values) are laid out for the
// terminal already, so they go in a block that keeps their lines, where
// Markdown would join them into a paragraph.
func manText(help string) string {
	var b strings.Builder
	inBlock := false
	for l := range strings.Lines(help) {
		indented := strings.HasPrefix(l, "  ")
		if indented != inBlock {
			b.WriteString("```\n")
			inBlock = indented
		}
		b.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteString("\n")
		}
	}
	if inBlock {
		b.WriteString("```\n")
	}
	return b.String()
}
