package monitor

import (
	"fmt"
	"strings"
	"time"
)

// GroupState is what a member of a Kafka consumer group holds and has been
// through: a rebalance storm shows as a number.
type GroupState struct {
	Group      string        `json:"group"`
	Generation int32         `json:"generation"`
	Partitions []string      `json:"partitions"` // topic[p], assigned now
	Rebalances int64         `json:"rebalances"` // generations joined after the first
	Paused     time.Duration `json:"-"`          // reading stood still for rebalances
	PausedSecs float64       `json:"rebalance_pause_seconds"`
}

// short is the status line's part: gen 7 · 2 partitions · 3 rebalances (1.2s paused).
func (g GroupState) short() string {
	var b strings.Builder
	parts := "partitions"
	if len(g.Partitions) == 1 {
		parts = "partition"
	}
	fmt.Fprintf(&b, "gen %d · %d %s", g.Generation, len(g.Partitions), parts)
	if g.Rebalances > 0 {
		fmt.Fprintf(&b, " · rebalances %d (paused %v)", g.Rebalances, g.Paused.Round(time.Millisecond))
	}
	return b.String()
}
