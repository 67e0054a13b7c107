// Package httpparse turns the two byte streams of a TCP connection into
// HTTP/1.x transactions: an incremental parser per direction, requests and
// responses paired in order, one wire.Transaction per pair.
//
// # Shape
//
// NewFactory returns a stream.Factory; each connection gets a parser that
// implements stream.Parser. Each direction is an explicit state machine
// (start, head, Content-Length body, chunk size / data / CRLF, trailers,
// read-until-close body, resync, hold, tunnel) fed byte ranges as they
// arrive, so any segmentation of the same bytes gives the same records.
// Heads are accumulated (up to MaxHeaderBytes) and parsed once complete
// into a single string whose substrings become the record's fields: a
// small transaction costs a handful of allocations. Bodies stream through
// and only the first BodyLimit bytes are kept.
//
// # Pairing
//
// Requests queue in wire order (pipelining) and each final response
// answers the oldest unanswered request. On a connection joined midstream
// or with a gap, that request must also have started no later than the
// response (so a response whose request was lost is not paired with the
// next one); on a clean connection order alone decides, which tolerates
// clock skew between the ports of a split tap.
// Interim 1xx responses (100 Continue, 103) are not final: they are noted
// in Extra as "interim"="100". A response with no request to answer
// (midstream join, lost request) becomes a record flagged no_request whose
// ts is the response's first byte. A request is emitted without response
// (no_response) at Close, after ResponseTimeout of packet time (Tick and
// Data advance it), or when more than MaxPending wait.
//
// # Framing policy (RFC 9112 §6.3, and what is flagged)
//
//   - No body: responses to HEAD, 1xx, 204, 304; requests without
//     Content-Length or Transfer-Encoding.
//   - Transfer-Encoding with chunked final: chunked, trailers kept. If
//     Content-Length is also present, chunked is used and the record is
//     flagged ambiguous_framing (CL.TE smuggling).
//   - Transfer-Encoding without chunked final: read until close; on a
//     request this is flagged ambiguous_framing (servers must reject it).
//     chunked applied twice or not last: ambiguous_framing.
//   - Content-Length: repeated identical values (also "5, 5") are fine;
//     different values are ambiguous_framing and the FIRST value frames the
//     body; an invalid value is unparsable and the direction resynchronises
//     after the head.
//   - obs-fold (a header line starting with SP/HTAB) is joined to the
//     previous value with one space and flagged ambiguous_framing, as is
//     whitespace between a field name and its colon, and two Host fields
//     with different values.
//   - A response without Content-Length or chunked is read until close.
//   - Expect: 100-continue: the request body is still expected after a
//     final response (the client sends it or closes, RFC 9110 §10.1.1).
//
// # Protocol switches
//
// A 101 answer to a request with Upgrade (websocket, h2c, ...), a 2xx
// answer to CONNECT ("tunnel") and the HTTP/2 prior-knowledge preface
// ("h2") end HTTP/1 on the connection. The switching transaction carries
// wire.FlagUpgrade and Extra "upgrade"=protocol; client bytes sent after an
// Upgrade request are held (UpgradeHoldLimit) until the response decides.
// Later bytes of both directions go to the parser Options.OnUpgrade
// returns, or are dropped and counted (tunnel_dropped).
//
// # Content codings
//
// gzip (x-gzip), deflate (zlib, or raw deflate), br and zstd, up to two
// stacked, are decoded at the end of the body from the first
// InspectionDepth compressed bytes. The record keeps the first BodyLimit
// decoded bytes; *BodyLen is the decoded length and *BodyWireLen the
// length on the wire after de-chunking. Decoding stops after
// DecompressLimit bytes (decode_error set, Len is then a lower bound); an
// unknown or corrupt coding sets decode_error and keeps the wire bytes.
// When the compressed body was cut at InspectionDepth or by a gap, Len
// covers only what could be decoded and the truncated or gap flag says so.
//
// # Loss and garbage
//
//   - Gap inside a body of known length with a known size: skipped,
//     framing kept, the message flagged gap (its kept body stops at the
//     hole; lengths still count the lost bytes).
//   - Any other gap (in a head, a chunk-size line, unknown size, or
//     running past the message end): the message in progress ends flagged
//     gap, and the direction resynchronises: the next message parsed is
//     flagged gap too, as its start (or a whole message) may be lost.
//     Bytes on either side of a gap are never parsed as one message.
//   - Resync looks for a line starting with a registered method and a
//     space (requests; "OST /x" left by a gap that ate the "P" is not
//     one) or "HTTP/1." (responses), then requires a strict start line;
//     the first byte after a gap and of a midstream stream count as line
//     starts.
//   - On such a lossy connection (a gap, or joined midstream) the first
//     bytes of a response body are checked: a status line there means the
//     response had no body (it answered a HEAD that was lost) and starts
//     the next response (counted as response_body_was_response).
//   - Bytes lost while client bytes are held for a protocol switch are
//     passed on as a Gap to the parser that takes over.
//   - Midstream connections (stream.ConnInfo.Midstream) start in resync
//     and all their records carry midstream; with Options.Midstream false
//     they are ignored and counted.
//   - A start line that does not parse is counted (bad_start_line); a
//     request one becomes a placeholder record flagged unparsable, so the
//     server's 400 still pairs with it. Heads over MaxHeaderBytes or
//     MaxHeaders, bad chunk lines and chunk sizes over MaxChunkSize end
//     the message flagged unparsable, with the fields parsed so far.
//   - A message cut by the end of the connection is flagged
//     request_truncated or response_truncated.
//
// # Memory
//
// Between messages a connection holds no buffer: head buffers and
// compressed-body buffers come from pools shared by the factory's
// connections. While a message is in flight a direction holds at most
// MaxHeaderBytes of head, BodyLimit of kept body (InspectionDepth of
// compressed body), UpgradeHoldLimit of held bytes, and MaxPending
// requests wait per connection.
//
// # Record fields
//
// Method, Path (as on the wire without the query; for absolute-form
// targets the path part, "/" when empty), Query (raw, without "?"),
// Version ("HTTP/1.1"), Protocol ("http/1.0" or "http/1.1"), Host
// (absolute-form authority, else the Host field, else the server ip:port),
// Status and Reason of the final response, headers and trailers with
// case preserved, content types as sent (parameters included), and packet
// times of the first and last byte of each message.
package httpparse
