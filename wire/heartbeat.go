package wire

import "time"

// Heartbeat is the sensor's periodic report of its own health. It travels on
// the same topic as the transactions so that consumers can tell a quiet
// network from a blind sensor: loss is data, not only a metric.
type Heartbeat struct {
	SensorID string    `json:"sensor_id"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"ts"` // packet time of the last packet seen
	// Cumulative counters since the sensor started.
	Packets          uint64 `json:"packets"`
	Bytes            uint64 `json:"bytes"`
	KernelDrops      uint64 `json:"kernel_drops"`
	CaptureLossBytes uint64 `json:"capture_loss_bytes"`
	AckedBytes       uint64 `json:"acked_bytes"`
	Transactions     uint64 `json:"transactions"`
	// Dropped counts records the sensor dropped, by reason.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// Mirrors lists the mirror sessions that delivered packets since the
	// previous heartbeat.
	Mirrors []Mirror `json:"mirrors,omitempty"`
}

// CaptureLossRatio is the share of acknowledged bytes that were never seen.
func (h *Heartbeat) CaptureLossRatio() float64 {
	if h.AckedBytes == 0 {
		return 0
	}
	return float64(h.CaptureLossBytes) / float64(h.AckedBytes)
}
