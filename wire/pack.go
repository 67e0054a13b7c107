package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// ContentTypeTransactions marks a record that packs several transactions
// of one service (message TransactionPack in apiscout.proto): Kafka's
// cost is mostly per record, so a sensor packs what one output batch
// holds for a service into one Kafka record rather than one each.
const ContentTypeTransactions = "application/vnd.apiscout.transactions+protobuf"

// packLenBytes is the room AppendPacked reserves for a transaction's
// length: three varint bytes cover 2 MiB, far above any record a sensor
// writes; a longer one is moved to make room.
const packLenBytes = 3

// AppendPacked appends t to a pack being built in b (field 1 of
// TransactionPack). It encodes t in place after a reserved length, so
// nothing is encoded twice; the length is written as a three-byte varint,
// padded when shorter, which protobuf decoders accept.
func AppendPacked(b []byte, t *Transaction) []byte {
	b = append(b, 1<<3|byte(protowire.BytesType))
	at := len(b)
	b = append(b, 0, 0, 0)
	b = AppendTransaction(b, t)
	n := len(b) - at - packLenBytes
	if n < 1<<21 {
		b[at] = byte(n) | 0x80
		b[at+1] = byte(n>>7) | 0x80
		b[at+2] = byte(n >> 14)
		return b
	}
	// Over 2 MiB: shift the record to fit its real length.
	size := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, size-packLenBytes)...)
	copy(b[at+size:], b[at+packLenBytes:at+packLenBytes+n])
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

// WalkPack calls fn with the encoding of each transaction of a pack, in
// order; the slices alias b. Unknown fields are skipped.
func WalkPack(b []byte, fn func(raw []byte) error) error {
	for len(b) > 0 {
		num, typ, _, raw, n, err := consumeField(b)
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			continue
		}
		if err := fn(raw); err != nil {
			return err
		}
	}
	return nil
}
