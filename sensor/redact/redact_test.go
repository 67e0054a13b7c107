package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apiscout/apiscout/internal/config"
	"github.com/apiscout/apiscout/wire"
)

const testKey = "0123456789abcdef-test-key"

// fp computes a fingerprint independently of the package.
func fp(secret string) string {
	m := hmac.New(sha256.New, []byte(testKey))
	m.Write([]byte(secret))
	return "fp:" + hex.EncodeToString(m.Sum(nil)[:8])
}

func newTest(t testing.TB, mut func(*config.SensorConfig)) *Redactor {
	t.Helper()
	cfg := config.Default().Sensor
	cfg.RedactKey = testKey
	cfg.RedactHeaders = []string{"X-Tenant-Secret"}
	cfg.RedactQuery = []string{"session"}
	if mut != nil {
		mut(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

var (
	jwtHeader = b64(`{"alg":"RS256","typ":"JWT"}`)
	jwtClaims = b64(`{"iss":"https://idp.example.com","sub":"user-1","exp":1900000000,"roles":["admin"]}`)
	jwt       = jwtHeader + "." + jwtClaims + ".c2lnbmF0dXJl"
)

func TestHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, header, value, want string
		keepJWT                   bool
	}{
		{"bearer", "Authorization", "Bearer abc123", "Bearer " + fp("abc123"), true},
		{"basic", "authorization", "Basic dXNlcjpwYXNz", "Basic " + fp("dXNlcjpwYXNz"), true},
		{"digest keeps scheme", "Authorization", `Digest username="u", response="x"`, "Digest " + fp(`username="u", response="x"`), true},
		{"no scheme", "Authorization", "rawkey", fp("rawkey"), true},
		{"jwt kept", "Authorization", "Bearer " + jwt, "Bearer " + fp(jwt) + " jwt:" + jwtHeader + "." + jwtClaims, true},
		{"jwt dropped", "Authorization", "Bearer " + jwt, "Bearer " + fp(jwt), false},
		{"not a jwt", "Authorization", "Bearer a.b.c", "Bearer " + fp("a.b.c"), true},
		{"proxy", "Proxy-Authorization", "Basic Zm9vOmJhcg==", "Basic " + fp("Zm9vOmJhcg=="), true},
		{"cookie", "Cookie", "sid=s3cr3t; theme=dark;flag", "sid=" + fp("s3cr3t") + "; theme=" + fp("dark") + "; " + fp("flag"), true},
		{"cookie jwt", "Cookie", "token=" + jwt, "token=" + fp(jwt) + " jwt:" + jwtHeader + "." + jwtClaims, true},
		{"set-cookie", "Set-Cookie", "sid=s3cr3t; Path=/; HttpOnly; Secure", "sid=" + fp("s3cr3t") + "; Path=/; HttpOnly; Secure", true},
		{"set-cookie bare", "Set-Cookie", "sid=s3cr3t", "sid=" + fp("s3cr3t"), true},
		{"api key", "X-Api-Key", "k-123", fp("k-123"), true},
		{"configured", "x-tenant-secret", "t-1", fp("t-1"), true},
		{"referer query", "Referer", "https://app/cb?code=1&access_token=tok#frag", "https://app/cb?code=1&access_token=" + fp("tok") + "#frag", true},
		{"other header untouched", "Accept", "application/json", "application/json", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTest(t, func(c *config.SensorConfig) { c.KeepJWTClaims = tc.keepJWT })
			tx := &wire.Transaction{RequestHeaders: []wire.Header{{Name: tc.header, Value: tc.value}}}
			r.Apply(tx)
			if got := tx.RequestHeaders[0].Value; got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if tx.RequestHeaders[0].Name != tc.header {
				t.Errorf("name changed to %q", tx.RequestHeaders[0].Name)
			}
		})
	}
}

// TestSameSecretSameFingerprint: a token in a header and in a query
// parameter fingerprints the same; another key gives another one.
func TestSameSecretSameFingerprint(t *testing.T) {
	r := newTest(t, nil)
	tx := &wire.Transaction{
		RequestHeaders: []wire.Header{{Name: "Authorization", Value: "Bearer tok/en"}},
		Query:          "access_token=tok%2Fen",
	}
	r.Apply(tx)
	if want := "access_token=" + fp("tok/en"); tx.Query != want {
		t.Fatalf("query %q, want %q", tx.Query, want)
	}
	if !strings.HasSuffix(tx.RequestHeaders[0].Value, fp("tok/en")) {
		t.Fatalf("header %q does not carry the query's fingerprint", tx.RequestHeaders[0].Value)
	}
	other := newTest(t, func(c *config.SensorConfig) { c.RedactKey = "another-key-of-16-bytes" })
	tx2 := &wire.Transaction{Query: "access_token=tok%2Fen"}
	other.Apply(tx2)
	if tx2.Query == tx.Query {
		t.Fatal("two keys gave the same fingerprint")
	}
}

func TestQuery(t *testing.T) {
	r := newTest(t, nil)
	for _, tc := range []struct{ in, want string }{
		{"a=1&b=2", "a=1&b=2"},
		{"api_key=K&x=1", "api_key=" + fp("K") + "&x=1"},
		{"x=1&Session=abc", "x=1&Session=" + fp("abc")},
		{"token=&x", "token=&x"},
		{"password=p+w&key=k;sig=s", "password=" + fp("p w") + "&key=" + fp("k") + ";sig=" + fp("s")},
		{"t%6Fken=v", "t%6Fken=" + fp("v")},
	} {
		tx := &wire.Transaction{Query: tc.in}
		r.Apply(tx)
		if tx.Query != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, tx.Query, tc.want)
		}
	}
}

func TestBodies(t *testing.T) {
	r := newTest(t, nil)
	for _, tc := range []struct {
		name, ctype, in, want string
	}{
		{"card in json string", "application/json", `{"card":"4111 1111 1111 1111","n":1}`,
			`{"card":"[card:visa:1111:` + fp("4111111111111111") + `]","n":1}`},
		{"card as bare number", "application/json", `{"pan": 5555555555554444}`,
			`{"pan": "[card:mastercard:4444:` + fp("5555555555554444") + `]"}`},
		{"amex with dashes", "text/plain", "pay 3782-822463-10005 now",
			"pay [card:amex:0005:" + fp("378282246310005") + "] now"},
		{"luhn fails", "text/plain", "4111111111111112", "4111111111111112"},
		{"timestamp is no card", "application/json", `{"ts":1732442400000,"id":12345678901234567}`, `{"ts":1732442400000,"id":12345678901234567}`},
		{"digits inside a word", "text/plain", "ord4111111111111111", "ord4111111111111111"},
		{"ssn", "application/json", `{"ssn":"123-45-6789"}`, `{"ssn":"[ssn:` + fp("123-45-6789") + `]"}`},
		{"secret key after a masked value", "application/json", `{"ssn":"123-45-6789","password":"x","to":"a@example.com","token":"t"}`,
			`{"ssn":"[ssn:` + fp("123-45-6789") + `]","password":"[secret:` + fp("x") + `]","to":"[email:` + fp("a@example.com") + `@example.com]","token":"[secret:` + fp("t") + `]"}`},
		{"invalid ssn area", "text/plain", "000-45-6789 666-12-3456", "000-45-6789 666-12-3456"},
		{"email", "application/json", `{"to":"Alice.B+x@Mail.Example.com."}`, `{"to":"[email:` + fp("Alice.B+x@Mail.Example.com") + `@Mail.Example.com]."}`},
		{"not an email", "text/plain", "a@b user@localhost x@1.2.3.4", "a@b user@localhost x@1.2.3.4"},
		{"password field", "application/json", `{"user":"bob","Password" : "hunter2","new_password":"x\"y"}`,
			`{"user":"bob","Password" : "[secret:` + fp("hunter2") + `]","new_password":"[secret:` + fp(`x\"y`) + `]"}`},
		{"token fields", "application/json", `{"access_token":"at","refreshToken":"rt","token_type":"Bearer","expires":3600}`,
			`{"access_token":"[secret:` + fp("at") + `]","refreshToken":"[secret:` + fp("rt") + `]","token_type":"Bearer","expires":3600}`},
		{"form", "application/x-www-form-urlencoded", "user=bob&password=p%40ss&client_secret=cs",
			"user=bob&password=[secret:" + fp("p@ss") + "]&client_secret=[secret:" + fp("cs") + "]"},
		{"private key", "application/json", `{"k":"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"}`,
			`{"k":"[private_key:` + fp(`-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----`) + `]"}`},
		{"public key untouched", "text/plain", "-----BEGIN PUBLIC KEY-----\nMII\n-----END PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----\nMII\n-----END PUBLIC KEY-----"},
		{"binary untouched", "image/png", "4111111111111111", "4111111111111111"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &wire.Transaction{ResponseBody: []byte(tc.in), ResponseContentType: tc.ctype}
			r.Apply(tx)
			if got := string(tx.ResponseBody); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if json.Valid([]byte(tc.in)) && !json.Valid(tx.ResponseBody) {
				t.Errorf("masking broke valid JSON: %s", tx.ResponseBody)
			}
		})
	}
}

func TestMaskBodiesOff(t *testing.T) {
	r := newTest(t, func(c *config.SensorConfig) { c.MaskBodies = false })
	tx := &wire.Transaction{RequestBody: []byte(`{"password":"x","card":"4111111111111111"}`), RequestContentType: "application/json"}
	r.Apply(tx)
	if string(tx.RequestBody) != `{"password":"x","card":"4111111111111111"}` {
		t.Errorf("body masked with mask_bodies off: %s", tx.RequestBody)
	}
}

func TestCleartextCredentialsFlag(t *testing.T) {
	r := newTest(t, nil)
	for _, tc := range []struct {
		name string
		tx   wire.Transaction
		want bool
	}{
		{"authorization", wire.Transaction{RequestHeaders: []wire.Header{{Name: "Authorization", Value: "Bearer x"}}}, true},
		{"api key query", wire.Transaction{Query: "api_key=1"}, true},
		{"password body", wire.Transaction{RequestBody: []byte(`{"password":"p"}`), RequestContentType: "application/json"}, true},
		{"cookie only", wire.Transaction{RequestHeaders: []wire.Header{{Name: "Cookie", Value: "a=b"}}}, false},
		{"nothing", wire.Transaction{Query: "a=1"}, false},
	} {
		r.Apply(&tc.tx)
		if got := tc.tx.Flags.Has(wire.FlagCleartextCredentials); got != tc.want {
			t.Errorf("%s: cleartext_credentials = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*config.SensorConfig)
		key  string
	}{
		{"short key", func(c *config.SensorConfig) { c.RedactKey = "short" }, "sensor.redact_key"},
		{"bad header", func(c *config.SensorConfig) { c.RedactHeaders = []string{"X Bad"} }, "sensor.redact_headers"},
		{"bad query", func(c *config.SensorConfig) { c.RedactQuery = []string{"a=b"} }, "sensor.redact_query"},
	} {
		cfg := config.Default().Sensor
		cfg.RedactKey = testKey
		tc.mut(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.key)
		}
	}
	cfg := config.Default().Sensor
	cfg.RedactKey = ""
	r, err := New(cfg)
	if err != nil || !r.Ephemeral() {
		t.Fatalf("empty key: %v, ephemeral %v; want a per-process key", err, r != nil && r.Ephemeral())
	}
}

func TestMetrics(t *testing.T) {
	r := newTest(t, nil)
	reg := prometheus.NewRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	r.Apply(&wire.Transaction{
		RequestHeaders: []wire.Header{{Name: "Authorization", Value: "Bearer " + jwt}, {Name: "Cookie", Value: "a=1; b=2"}},
		Query:          "token=1&key=2",
		RequestBody:    []byte(`{"email":"a@example.com","card":"4111111111111111"}`),
	})
	want := map[string]float64{KindAuthorization: 1, KindJWTKept: 1, KindCookie: 1, KindQuery: 2, KindEmail: 1, KindCard: 1, KindSSN: 0}
	for kind, n := range want {
		var m dto.Metric
		if err := r.byKind[kind].Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != n {
			t.Errorf("values_total{kind=%q} = %v, want %v", kind, got, n)
		}
	}
}
