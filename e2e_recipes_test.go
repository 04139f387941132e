package main

// The shell blocks of README.md, CONTRIBUTING.md and docs/*.md. Each is
// marked, on the line before it, either
//
//	<!-- recipe: NAME -->            run twice by a test, its result checked
//	<!-- illustrative: REASON -->    not run: it needs AWS, a remote host, cron…
//
// and a block of another language that a recipe needs as a file is marked
// <!-- file: NAME -->. TestRecipeBlocksMarked holds every block to that,
// and TestRecipes runs the recipes.

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docFiles are the pages whose blocks are checked.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	return append([]string{"README.md", "CONTRIBUTING.md"}, pages...)
}

// readDocs returns every page of docFiles, one after another.
func readDocs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range docFiles(t) {
		b.WriteString(readFile(t, f))
		b.WriteString("\n")
	}
	return b.String()
}

// A docBlock is a fenced block of a page and the marker before it.
type docBlock struct {
	file string
	line int    // of the opening fence
	lang string // sh, sql, json…
	mark string // recipe, illustrative, file, or "" for none
	arg  string // the recipe's or file's name, or the reason
	text string // the block's lines, their indentation removed
}

var (
	fenceRE  = regexp.MustCompile("^( *)```([a-z]*) *$")
	markerRE = regexp.MustCompile(`^ *<!-- (recipe|illustrative|file): (.+?) -->$`)
)

// shellLangs are the fences that hold commands to run.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// docBlocks parses the fenced blocks of every page.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	var blocks []docBlock
	for _, f := range docFiles(t) {
		ls := strings.Split(readFile(t, f), "\n")
		for i := 0; i < len(ls); i++ {
			m := fenceRE.FindStringSubmatch(ls[i])
			if m == nil {
				continue
			}
			b := docBlock{file: f, line: i + 1, lang: m[2]}
			if i > 0 {
				if mm := markerRE.FindStringSubmatch(ls[i-1]); mm != nil {
					b.mark, b.arg = mm[1], mm[2]
				}
			}
			var text []string
			for i++; i < len(ls) && strings.TrimSpace(ls[i]) != "```"; i++ {
				text = append(text, strings.TrimPrefix(ls[i], m[1]))
			}
			b.text = strings.Join(text, "\n") + "\n"
			blocks = append(blocks, b)
		}
	}
	return blocks
}
