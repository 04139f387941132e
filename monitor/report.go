package monitor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/batchpipe/batchpipe/batcher"
)

// A Report is a run's result for machines: what --stats-file holds.
// Field names are part of the interface: add, never rename.
type Report struct {
	Running          bool             `json:"running"`
	ExitStatus       *int             `json:"exit_status,omitempty"` // set once the run is over
	Error            string           `json:"error,omitempty"`
	Sink             string           `json:"sink"`
	RecordsRead      int64            `json:"records_read"`
	BytesRead        int64            `json:"bytes_read"`
	Delivered        int64            `json:"records_delivered"`
	DeadLettered     int64            `json:"records_dead_lettered"`
	Undelivered      int64            `json:"records_undelivered"`
	Withdrawn        int64            `json:"records_withdrawn"`
	InFlight         int64            `json:"records_in_flight"`
	Batches          int64            `json:"batches"`
	BatchesDelivered int64            `json:"batches_delivered"`
	BatchesPartly    int64            `json:"batches_partly_delivered"`
	BytesDelivered   int64            `json:"bytes_delivered"`
	Retries          int64            `json:"retries"`
	BatchesReformed  int64            `json:"batches_reformed"` // cut where an earlier run planned them
	FlushReasons     map[string]int64 `json:"flush_reasons"`
	ElapsedSeconds   float64          `json:"elapsed_seconds"`
	RecordsPerSecond float64          `json:"records_per_second"`
	Lag              map[string]int64 `json:"kafka_lag,omitempty"` // by topic
	Group            *GroupState      `json:"kafka_group,omitempty"`

	// BatchesFoundInPlace counts the s3 sink's batches whose object was
	// there already, with their bytes: delivered by an earlier attempt.
	BatchesFoundInPlace int64 `json:"batches_found_in_place,omitempty"`
}

// NewReport fills a report from the counters.
func NewReport(sink string, st batcher.Stats) Report {
	r := Report{
		Sink:             sink,
		RecordsRead:      st.Read,
		BytesRead:        st.BytesRead,
		Delivered:        st.Delivered,
		DeadLettered:     st.DeadLettered,
		Undelivered:      st.Undelivered,
		Withdrawn:        st.Withdrawn,
		InFlight:         st.InFlight,
		BatchesReformed:  st.Reformed,
		Batches:          st.Batches,
		BatchesDelivered: st.BatchesDone,
		BatchesPartly:    st.BatchesPartly,
		BytesDelivered:   st.BytesDelivered,
		Retries:          st.Retries,
		FlushReasons:     st.Reasons,
		ElapsedSeconds:   st.Elapsed.Seconds(),
	}
	if r.FlushReasons == nil {
		r.FlushReasons = map[string]int64{}
	}
	if s := st.Elapsed.Seconds(); s > 0 {
		r.RecordsPerSecond = float64(st.Read) / s
	}
	return r
}

// WriteFile writes r as JSON to path atomically: a reader sees the old
// report or the new one, never half of one.
func WriteFile(path string, r Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("stats file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("stats file: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("stats file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("stats file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("stats file: %w", err)
	}
	return nil
}
