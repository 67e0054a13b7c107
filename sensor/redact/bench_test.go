package redact

import (
	"strings"
	"testing"

	"github.com/apiscout/apiscout/wire"
)

func benchTx() *wire.Transaction {
	return &wire.Transaction{
		RequestHeaders: []wire.Header{
			{Name: "Host", Value: "api.example.com"}, {Name: "User-Agent", Value: "Go-http-client/1.1"},
			{Name: "Authorization", Value: "Bearer " + jwt}, {Name: "Accept", Value: "application/json"},
			{Name: "Cookie", Value: "sid=abc; theme=dark"},
		},
		ResponseHeaders: []wire.Header{
			{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "1000"},
			{Name: "Date", Value: "Tue, 24 Nov 2026 10:00:00 GMT"},
		},
		Query:               "limit=10&page=2",
		ResponseBody:        []byte(strings.Repeat(`{"id":12345,"name":"user name","created":1732442400000,"tags":["a","b"]},`, 14)),
		ResponseContentType: "application/json",
	}
}

// BenchmarkApply: a typical API transaction (JWT bearer, a cookie, a 1 KB
// JSON response without secrets), headers, query and body masking.
// Each iteration restores the template's values first (a copy of two
// short header slices, negligible next to Apply).
func BenchmarkApply(b *testing.B) {
	r := newTest(b, nil)
	tmpl := benchTx()
	tx := benchTx()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		copy(tx.RequestHeaders, tmpl.RequestHeaders)
		copy(tx.ResponseHeaders, tmpl.ResponseHeaders)
		tx.Query, tx.ResponseBody, tx.Flags = tmpl.Query, tmpl.ResponseBody, 0
		r.Apply(tx)
	}
}

// BenchmarkMaskBody: scanning a 64 KiB JSON body with a few matches.
func BenchmarkMaskBody(b *testing.B) {
	r := newTest(b, nil)
	body := []byte(strings.Repeat(`{"id":12345,"email":"someone@example.com","card":"4111111111111111","note":"plain text here"},`, 700))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.maskBody(body, "application/json")
	}
}

// BenchmarkMaskBodyClean: the common case, a body with nothing to mask.
func BenchmarkMaskBodyClean(b *testing.B) {
	r := newTest(b, nil)
	body := []byte(strings.Repeat(`{"id":12345,"name":"user name","created":1732442400000,"tags":["a","b"]},`, 900))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.maskBody(body, "application/json")
	}
}

// BenchmarkMaskBodyCatalog: a clean catalog page whose strings are
// hyphenated slugs, like make bench's simulated shop.
func BenchmarkMaskBodyCatalog(b *testing.B) {
	r := newTest(b, nil)
	body := []byte(`{"items":[` + strings.Repeat(`{"description":"to-practices-spring how-password-to-spring-notes security-notes-guide","name":"spring-notes-migrate","price":6.51,"sku":"KA-8215","tags":["update-notes-sale-best-practices","update-api-pricing-to"]},`, 300) + `{}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.maskBody(body, "application/json")
	}
}
