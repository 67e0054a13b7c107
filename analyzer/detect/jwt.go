package detect

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/apiscout/apiscout/analyzer/anomaly"
	"github.com/apiscout/apiscout/analyzer/baseline"
	"github.com/apiscout/apiscout/analyzer/inventory"
)

// jwtLeeway tolerates clock skew between issuer and API before an
// expired token counts as accepted.
const jwtLeeway = time.Minute

// jwt — jwt_weakness, API2:2023: a successful response to a call whose
// bearer token is a JWT with alg "none" (critical: signatures are not
// checked), or whose exp lies more than a minute before the call's packet
// time (high: expiry is not checked). The token is parsed once per client
// identity (the identity is the credential's fingerprint).
func (s *Set) jwt(obs *inventory.Observation, cl *baseline.Client, c *baseline.Call) {
	if !cl.JWTParsed {
		cl.JWTParsed = true
		if v, ok := obs.Tx.RequestHeader("Authorization"); ok {
			cl.JWTAlg, cl.JWTExpires = parseJWT(v)
		}
	}
	if !success(c.Status) {
		return
	}
	var reason string
	sev := anomaly.High
	switch {
	case strings.EqualFold(cl.JWTAlg, "none"):
		reason, sev = "alg_none_accepted", anomaly.Critical
	case !cl.JWTExpires.IsZero() && obs.Time.Sub(cl.JWTExpires) > jwtLeeway:
		reason = "expired_token_accepted"
	default:
		return
	}
	if s.touch(anomaly.TypeJWTWeakness, obs.Service, obs.Method, obs.Path, "", obs.Time) {
		return
	}
	ev := evidence(anomaly.TypeJWTWeakness, obs, "", c)
	ev.Severity = sev
	ev.Summary = "endpoint accepted a weak JWT: " + reason
	ev.Details = addDetails(ev.Details, "reason", reason, "client", obs.Identity, "alg", cl.JWTAlg)
	if !cl.JWTExpires.IsZero() {
		ev.Details["exp"] = cl.JWTExpires.UTC().Format(time.RFC3339)
	}
	s.raise(ev, frozenRef{})
}

// parseJWT reads alg from the header and exp from the claims of an
// Authorization value, without verifying anything: either "Bearer <jwt>"
// as sent, or the sensor's redacted form "Bearer fp:<hex> jwt:<h>.<c>"
// (sensor.keep_jwt_claims), which keeps header and claims but not the
// signature. Malformed tokens give zero values.
func parseJWT(auth string) (alg string, exp time.Time) {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "bearer ")
	}
	if !ok {
		return "", time.Time{}
	}
	if i := strings.Index(tok, "jwt:"); i >= 0 && strings.HasPrefix(tok, "fp:") {
		tok = tok[i+len("jwt:"):]
	}
	parts := strings.SplitN(strings.TrimSpace(tok), ".", 3)
	if len(parts) < 2 || (len(parts) == 2 && !strings.HasPrefix(auth[len("Bearer "):], "fp:")) {
		return "", time.Time{}
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "=")); err == nil {
		_ = json.Unmarshal(b, &hdr)
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err == nil {
		if json.Unmarshal(b, &claims) == nil && claims.Exp != "" {
			if f, err := claims.Exp.Float64(); err == nil && f > 0 {
				exp = time.Unix(int64(f), 0)
			}
		}
	}
	return hdr.Alg, exp
}
