package wire

import (
	"strconv"
	"time"
)

// TransactionID builds the stable id of a transaction. The request's packet
// time is part of it so that connection ids reused after a sensor restart
// do not collide.
func TransactionID(sensorID string, connID uint64, index uint32, start time.Time) string {
	b := make([]byte, 0, len(sensorID)+48)
	b = append(b, sensorID...)
	b = append(b, '-')
	b = strconv.AppendUint(b, connID, 36)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(index), 36)
	b = append(b, '-')
	b = strconv.AppendInt(b, start.UnixNano(), 36)
	return string(b)
}
