package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/sensor"
	"github.com/apiscout/apiscout/wire"
)

func init() {
	register(func() *cobra.Command {
		var verbose bool
		cmd := &cobra.Command{
			Use:    "conformance DIR",
			Short:  "Compare the sensor with Zeek's http.log on Zeek's own HTTP test captures",
			Hidden: true,
			Long: `Runs the sensor over every capture listed in DIR/zeek/expected-normalized
(Zeek's btest baselines, see DIR/README.md) and prints, per capture, how
many of Zeek's HTTP records the sensor reported and how many of the
compared fields agree: method, host, URI (Zeek logs it percent-decoded),
status, request and response body lengths (decoded entity lengths).`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return runConformance(cmd, args[0], verbose) },
		}
		cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every disagreement")
		return cmd
	})
}

type zeekRecord map[string]any

func (z zeekRecord) str(k string) string {
	switch v := z[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func runConformance(cmd *cobra.Command, dir string, verbose bool) error {
	base := filepath.Join(dir, "zeek")
	files, err := filepath.Glob(filepath.Join(base, "expected-normalized", "*.jsonl"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no expectations under %s/expected-normalized (is %s the shared conformance folder?)", base, dir)
	}
	sort.Strings(files)
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CAPTURE\tZEEK\tFOUND\tFIELDS AGREED\tDIFFERENCES")
	var totRec, totFound, totFields, totAgree int
	var notes []string
	for _, f := range files {
		meta, expected, err := readExpected(f)
		if err != nil {
			return err
		}
		pcap := filepath.Join(base, meta)
		txs, err := sensorRun(pcap)
		name := strings.TrimPrefix(meta, "testing/btest/Traces/")
		if err != nil {
			fmt.Fprintf(w, "%s\t%d\t-\t-\t%v\n", name, len(expected), err)
			totRec += len(expected)
			continue
		}
		found, fields, agree, diffs := compare(expected, txs)
		totRec += len(expected)
		totFound += found
		totFields += fields
		totAgree += agree
		d := ""
		if len(diffs) > 0 {
			d = diffs[0]
			if len(diffs) > 1 {
				d += fmt.Sprintf(" (+%d)", len(diffs)-1)
			}
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d/%d\t%s\n", name, len(expected), found, agree, fields, d)
		if verbose {
			for _, x := range diffs {
				notes = append(notes, name+": "+x)
			}
		}
	}
	w.Flush()
	pct := func(a, b int) float64 {
		if b == 0 {
			return 100
		}
		return 100 * float64(a) / float64(b)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "\n%d captures: %d of Zeek's %d HTTP records found (%.1f%%), %d of %d compared fields agree (%.1f%%)\n",
		len(files), totFound, totRec, pct(totFound, totRec), totAgree, totFields, pct(totAgree, totFields))
	for _, n := range notes {
		fmt.Fprintln(cmd.OutOrStdout(), n)
	}
	return nil
}

func readExpected(path string) (pcap string, recs []zeekRecord, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r zeekRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return "", nil, fmt.Errorf("%s: %w", path, err)
		}
		if m, ok := r["_meta"].(map[string]any); ok {
			pcap, _ = m["pcap"].(string)
			continue
		}
		recs = append(recs, r)
	}
	return pcap, recs, sc.Err()
}

type collectSink struct{ txs []*wire.Transaction }

func (c *collectSink) Write(_ context.Context, recs []*wire.Transaction) error {
	c.txs = append(c.txs, recs...)
	return nil
}
func (c *collectSink) Close() error { return nil }

func sensorRun(pcap string) ([]*wire.Transaction, error) {
	cfg := config.Default().Sensor
	cfg.Pcap, cfg.Progress, cfg.RedactKey, cfg.MaskBodies = []string{pcap}, false, "conformance-key-0123", false
	s := &collectSink{}
	p, err := sensor.New(cfg, zap.NewNop(), nil, s)
	if err != nil {
		return nil, err
	}
	if err := p.Run(context.Background()); err != nil && len(s.txs) == 0 {
		return nil, err
	}
	return s.txs, nil
}

// compare matches Zeek's records to the sensor's by connection and depth
// on it (Zeek's trans_depth counts from 1), and compares fields.
func compare(expected []zeekRecord, txs []*wire.Transaction) (found, fields, agree int, diffs []string) {
	used := map[int]bool{}
	for _, z := range expected {
		conn := z.str("id.orig_h") + "|" + z.str("id.orig_p") + "|" + z.str("id.resp_h") + "|" + z.str("id.resp_p")
		depth, _ := strconv.Atoi(z.str("trans_depth"))
		// Prefer the same depth on the connection, then the same method
		// and URI, then any unused record of the connection.
		best, score := -1, -1
		for i, tx := range txs {
			if used[i] || tx.Protocol == "tls" {
				continue
			}
			c := tx.Client.Addr().String() + "|" + strconv.Itoa(int(tx.Client.Port())) + "|" + tx.Server.Addr().String() + "|" + strconv.Itoa(int(tx.Server.Port()))
			if conn != "|||" && c != conn { // cut-format baselines carry no connection
				continue
			}
			sc := 0
			if tx.Method == z.str("method") && zeekURI(tx) == z.str("uri") {
				sc = 2
			}
			if int(tx.Index)+1 == depth {
				sc++
			}
			if sc > score {
				best, score = i, sc
			}
		}
		if best < 0 {
			diffs = append(diffs, fmt.Sprintf("not reported: %s %s (depth %d)", z.str("method"), z.str("uri"), depth))
			continue
		}
		used[best] = true
		found++
		tx := txs[best]
		check := func(field, want, got string) {
			fields++
			if want == got {
				agree++
				return
			}
			diffs = append(diffs, fmt.Sprintf("%s %s: %s zeek %q, apiscout %q", z.str("method"), z.str("uri"), field, want, got))
		}
		check("method", z.str("method"), tx.Method)
		if h := z.str("host"); h != "" || tx.Host != tx.Server.String() {
			check("host", h, tx.Host)
		}
		check("uri", z.str("uri"), zeekURI(tx))
		status := ""
		if tx.Status != 0 {
			status = strconv.Itoa(tx.Status)
		}
		check("status", z.str("status_code"), status)
		check("request_body_len", orZero(z.str("request_body_len")), strconv.FormatInt(tx.RequestBodyLen, 10))
		check("response_body_len", orZero(z.str("response_body_len")), strconv.FormatInt(tx.ResponseBodyLen, 10))
	}
	return found, fields, agree, diffs
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// zeekURI renders the target as Zeek logs it: percent-escapes decoded,
// '+' kept, control bytes and invalid UTF-8 as \xNN.
func zeekURI(tx *wire.Transaction) string {
	u := tx.Path
	if tx.Query != "" {
		u += "?" + tx.Query
	}
	if d, err := url.PathUnescape(u); err == nil {
		u = d
	}
	var b strings.Builder
	for i := 0; i < len(u); {
		r, n := utf8.DecodeRuneInString(u[i:])
		if (r == utf8.RuneError && n <= 1) || r < 0x20 || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", u[i])
			i++
			continue
		}
		b.WriteString(u[i : i+n])
		i += n
	}
	return b.String()
}
