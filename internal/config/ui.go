package config

import (
	"errors"
	"fmt"
	"time"
)

// UIConfig configures the web UI and REST API.
type UIConfig struct {
	// Listen binds loopback by default: the inventory is sensitive.
	Listen string `yaml:"listen" help:"address of the web UI and REST API"`
	// ReadTokens and AdminTokens are bearer tokens; when both are empty
	// the API is open, which is allowed only on a loopback address.
	ReadTokens  []string `yaml:"read_tokens" help:"bearer tokens with read-only access"`
	AdminTokens []string `yaml:"admin_tokens" help:"bearer tokens with admin access"`
	TLSCert     string   `yaml:"tls_cert" help:"certificate for HTTPS"`
	TLSKey      string   `yaml:"tls_key" help:"key for HTTPS"`
	// TLSClientCA makes HTTPS clients present a certificate it signed
	// (mTLS), before and besides the tokens.
	TLSClientCA string `yaml:"tls_client_ca" help:"CA bundle of client certificates; when set, HTTPS clients must present one it signed (mTLS)"`
	// SessionTTL is how long a browser session opened with a token lasts.
	// Each session costs about 200 bytes until it expires.
	SessionTTL time.Duration `yaml:"session_ttl" help:"lifetime of a browser session opened with a token"`
	// AuthFailureLimit is how many failed authentications one client
	// address may make per minute before it is answered 429; 0 turns the
	// limit off (not advised when the UI is reachable from a network).
	AuthFailureLimit int `yaml:"auth_failure_limit" help:"failed logins per client address per minute before 429 (0: no limit)"`
}

// minTokenLen keeps guessable tokens out: 16 characters of a random
// string are far beyond what the failure limit lets anyone try.
const minTokenLen = 16

func defaultUI() UIConfig {
	return UIConfig{Listen: "127.0.0.1:8080", SessionTTL: 12 * time.Hour, AuthFailureLimit: 10}
}

func (u *UIConfig) validate() error {
	var errs []error
	if (u.TLSCert == "") != (u.TLSKey == "") {
		errs = append(errs, fmt.Errorf("ui.tls_cert and ui.tls_key: set both or neither"))
	}
	if u.TLSClientCA != "" {
		if u.TLSCert == "" {
			errs = append(errs, errors.New("ui.tls_client_ca: set, but ui.tls_cert and ui.tls_key are not"))
		} else if err := readable(u.TLSClientCA); err != nil {
			errs = append(errs, fmt.Errorf("ui.tls_client_ca: %w", err))
		}
	}
	for _, l := range []struct {
		key  string
		toks []string
	}{{"ui.read_tokens", u.ReadTokens}, {"ui.admin_tokens", u.AdminTokens}} {
		for i, t := range l.toks {
			if len(t) < minTokenLen {
				errs = append(errs, fmt.Errorf("%s: token %d is %d characters, want at least %d (e.g. openssl rand -hex 24)", l.key, i+1, len(t), minTokenLen))
			}
		}
	}
	if u.SessionTTL <= 0 {
		errs = append(errs, fmt.Errorf("ui.session_ttl: %s, want a positive duration", u.SessionTTL))
	}
	if u.AuthFailureLimit < 0 {
		errs = append(errs, fmt.Errorf("ui.auth_failure_limit: %d is negative", u.AuthFailureLimit))
	}
	return errors.Join(errs...)
}
