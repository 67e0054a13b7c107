package wire

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
)

// Flags mark what the sensor could not see or did not trust in a
// transaction. They travel as a bit set and render as an array of names.
type Flags uint32

const (
	// FlagGap: bytes of this message were lost in capture.
	FlagGap Flags = 1 << iota
	// FlagRequestTruncated: the request body was cut at the body limit or
	// the inspection depth.
	FlagRequestTruncated
	// FlagResponseTruncated: the response body was cut likewise.
	FlagResponseTruncated
	// FlagUnparsable: a message could not be parsed; fields are partial.
	FlagUnparsable
	// FlagAmbiguousFraming: Content-Length with Transfer-Encoding, two
	// different Content-Lengths, or obsolete line folding (smuggling risk).
	FlagAmbiguousFraming
	// FlagNoResponse: no response was seen before the connection ended or
	// the response timeout expired.
	FlagNoResponse
	// FlagMidstream: the sensor joined the connection after it started.
	FlagMidstream
	// FlagRetransmitMismatch: a retransmitted segment carried bytes that
	// differ from the first copy (possible evasion); the first copy won.
	FlagRetransmitMismatch
	// FlagUpgrade: the connection switched protocols after this message.
	FlagUpgrade
	// FlagDecodeError: the Content-Encoding could not be decoded, or the
	// decompression limit was hit.
	FlagDecodeError
	// FlagNoRequest: a response was seen without its request.
	FlagNoRequest
	// FlagOneSided: only one direction of the connection was seen.
	FlagOneSided
	// FlagCleartextCredentials is set by the sensor when credentials were
	// sent without TLS.
	FlagCleartextCredentials
	// FlagStreaming: the response was still arriving when the record was
	// made (an event stream, a long download); its end time and body are
	// those of that moment, and the rest of it is not reported.
	FlagStreaming

	flagCount = iota
)

var flagNames = [flagCount]string{
	"gap", "request_truncated", "response_truncated", "unparsable",
	"ambiguous_framing", "no_response", "midstream", "retransmit_mismatch",
	"upgrade", "decode_error", "no_request", "one_sided", "cleartext_credentials",
	"streaming",
}

// FlagByName returns the flag with the given name.
func FlagByName(name string) (Flags, bool) {
	for i, n := range flagNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Has reports whether all flags in g are set.
func (f Flags) Has(g Flags) bool { return f&g == g }

// Names lists the set flags in bit order; unknown bits render as "bit<N>".
func (f Flags) Names() []string {
	out := make([]string, 0, bits.OnesCount32(uint32(f)))
	for i := 0; i < 32; i++ {
		if f&(1<<i) == 0 {
			continue
		}
		if i < flagCount {
			out = append(out, flagNames[i])
		} else {
			out = append(out, "bit"+strconv.Itoa(i))
		}
	}
	return out
}

func (f Flags) String() string { return fmt.Sprint(f.Names()) }

// MarshalJSON renders the flags as an array of names, never null.
func (f Flags) MarshalJSON() ([]byte, error) { return json.Marshal(f.Names()) }

// UnmarshalJSON accepts the array of names; unknown names are ignored so a
// newer sensor's JSON stays readable.
func (f *Flags) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	*f = 0
	for _, n := range names {
		if g, ok := FlagByName(n); ok {
			*f |= g
		}
	}
	return nil
}
