package kafka

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	// kafkatest makes its clients without Config: as batchpipe's, they
	// keep no metrics.
	nilMetrics()
	goleak.VerifyTestMain(m)
}
