package wire

import (
	"encoding/binary"
	"fmt"
)

// HeaderOrigin names the Kafka header that says where a record comes from
// in its producer's stream (see Origin).
const HeaderOrigin = "apiscout-origin"

// OriginLen is the size of an encoded Origin.
const OriginLen = 20

// Origin places a record in its producer's output. Transaction.Seq counts
// a sensor's records, but records are spread over partitions by service,
// so an analyzer that owns some partitions sees only part of that
// sequence and cannot tell a gap from another analyzer's share. The
// producer therefore also numbers the records of each partition it
// writes: a consumer of that partition sees every number, and a jump is a
// loss.
//
// Epoch tells one run of a producer from the next: sequences start again
// at 1 after a restart, and (sensor, epoch, seq) stays unique where
// (sensor, seq) would not.
type Origin struct {
	Epoch uint64
	// Partition the producer chose; -1 when it did not know the topic's
	// partitions (then PartitionSeq is 0 and no gap can be judged).
	Partition    int32
	PartitionSeq uint64
}

// AppendOrigin appends the fixed 20-byte encoding of o (big endian epoch,
// partition, sequence): fixed so the producer can reserve it before it
// knows the partition.
func AppendOrigin(b []byte, o Origin) []byte {
	b = binary.BigEndian.AppendUint64(b, o.Epoch)
	b = binary.BigEndian.AppendUint32(b, uint32(o.Partition))
	return binary.BigEndian.AppendUint64(b, o.PartitionSeq)
}

// PutOrigin writes o into b, which has at least OriginLen bytes.
func PutOrigin(b []byte, o Origin) {
	binary.BigEndian.PutUint64(b, o.Epoch)
	binary.BigEndian.PutUint32(b[8:], uint32(o.Partition))
	binary.BigEndian.PutUint64(b[12:], o.PartitionSeq)
}

// DecodeOrigin decodes an origin header value.
func DecodeOrigin(b []byte) (Origin, error) {
	if len(b) != OriginLen {
		return Origin{}, fmt.Errorf("%w: origin header of %d bytes, want %d", ErrMalformed, len(b), OriginLen)
	}
	return Origin{
		Epoch:        binary.BigEndian.Uint64(b),
		Partition:    int32(binary.BigEndian.Uint32(b[8:])),
		PartitionSeq: binary.BigEndian.Uint64(b[12:]),
	}, nil
}
