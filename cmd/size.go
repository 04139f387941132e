package cmd

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// byteSize is a flag value such as 1000, 64KiB, 4MB, 1m or 1.5M. As in GNU
// coreutils, K, M and G (and KiB, MiB, GiB) are powers of 1024; KB, MB and
// GB are powers of 1000. Units take any case; a fraction is fine as long
// as the size comes to whole bytes.
type byteSize int64

// sizeUnits are matched lower-cased, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// maxSize bounds any size flag: batches are held in memory, -j + 2 of them.
const maxSize = 4 << 30

func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	lower := strings.ToLower(t)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(lower, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	bad := fmt.Errorf("%q is not a size (examples: 1000, 64KiB, 4MB, 1.5M)", s)
	if t == "" || strings.ContainsAny(t, "+-eE/") { // big.Rat takes 1e3 and 1/2 too
		return 0, bad
	}
	n, ok := new(big.Rat).SetString(t)
	if !ok {
		return 0, bad
	}
	n.Mul(n, new(big.Rat).SetInt64(mult))
	if !n.IsInt() {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	if n.Cmp(new(big.Rat).SetInt64(maxSize)) > 0 {
		return 0, fmt.Errorf("%q is more than %s: batches and records are held in memory", s, formatSize(maxSize))
	}
	return n.Num().Int64(), nil
}

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (*byteSize) Type() string { return "size" }

// formatSize writes n in the largest binary unit that divides it exactly.
func formatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// humanBytes writes n for people: 1.5 MB.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
