package config

import (
	"errors"
	"fmt"
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
}

func defaultUI() UIConfig {
	return UIConfig{Listen: "127.0.0.1:8080"}
}

func (u *UIConfig) validate() error {
	var errs []error
	if (u.TLSCert == "") != (u.TLSKey == "") {
		errs = append(errs, fmt.Errorf("ui.tls_cert and ui.tls_key: set both or neither"))
	}
	return errors.Join(errs...)
}
