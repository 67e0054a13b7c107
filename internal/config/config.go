// Package config holds apiscout's configuration: defaults, then one YAML
// file (strict: unknown keys are errors that name the line), then
// APISCOUT_* environment variables, then command-line flags, then
// Validate. Every key of the YAML file is reachable from all three.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. Each section lives in a file of its
// own, next to the defaults and their cost.
type Config struct {
	Log      LogConfig      `yaml:"log"`
	Metrics  MetricsConfig  `yaml:"metrics"`
	Sensor   SensorConfig   `yaml:"sensor"`
	Kafka    KafkaConfig    `yaml:"kafka"`
	Analyzer AnalyzerConfig `yaml:"analyzer"`
	Storage  StorageConfig  `yaml:"storage"`
	UI       UIConfig       `yaml:"ui"`
	Alerts   AlertsConfig   `yaml:"alerts"`
	Detect   DetectConfig   `yaml:"detect"`
}

// LogConfig selects the zap logger.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level" help:"log level: debug, info, warn, error"`
	// Format is json (for machines) or console (for people).
	Format string `yaml:"format" help:"log format: json or console"`
}

// MetricsConfig places the Prometheus /metrics and /healthz endpoints.
type MetricsConfig struct {
	// Listen is the address of /metrics and /healthz; empty disables them.
	Listen string `yaml:"listen" help:"address for /metrics and /healthz (empty: off)"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Log:      LogConfig{Level: "info", Format: "console"},
		Metrics:  MetricsConfig{Listen: "127.0.0.1:9090"},
		Sensor:   defaultSensor(),
		Kafka:    defaultKafka(),
		Analyzer: defaultAnalyzer(),
		Storage:  defaultStorage(),
		UI:       defaultUI(),
		Alerts:   defaultAlerts(),
		Detect:   defaultDetect(),
	}
}

// Validate checks the whole configuration and names the key to fix.
func (c *Config) Validate() error {
	var errs []error
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not json or console", c.Log.Format))
	}
	for _, v := range []interface{ validate() error }{&c.Sensor, &c.Kafka, &c.Analyzer, &c.Storage, &c.UI, &c.Alerts, &c.Detect} {
		if err := v.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LoadFile reads a YAML file over the defaults. An unknown key, a value of
// the wrong type or a duplicate key is an error naming the file and line.
func LoadFile(path string, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := Parse(data, c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Parse decodes YAML bytes over c, strictly.
func Parse(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, errEOF) || err.Error() == "EOF" {
			return nil // an empty file keeps the defaults
		}
		return err
	}
	return nil
}

var errEOF = errors.New("EOF")

// EnvPrefix starts every environment variable: sensor.pcap becomes
// APISCOUT_SENSOR_PCAP.
const EnvPrefix = "APISCOUT_"

// Field is one leaf of the configuration tree.
type Field struct {
	Key   string // dotted YAML path, e.g. "sensor.snaplen"
	Env   string // APISCOUT_SENSOR_SNAPLEN
	Flag  string // sensor.snaplen
	Help  string
	value reflect.Value
}

// Fields lists every leaf of c, in declaration order.
func Fields(c *Config) []Field {
	var out []Field
	walk(reflect.ValueOf(c).Elem(), "", &out)
	return out
}

func walk(v reflect.Value, prefix string, out *[]Field) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Duration(0)) {
			walk(fv, key, out)
			continue
		}
		*out = append(*out, Field{
			Key:   key,
			Env:   EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key)),
			Flag:  key,
			Help:  sf.Tag.Get("help"),
			value: fv,
		})
	}
}

// ApplyEnv sets every field whose APISCOUT_* variable is present.
func ApplyEnv(c *Config, lookup func(string) (string, bool)) error {
	for _, f := range Fields(c) {
		s, ok := lookup(f.Env)
		if !ok {
			continue
		}
		if err := setValue(f.value, s); err != nil {
			return fmt.Errorf("environment %s (%s): %w", f.Env, f.Key, err)
		}
	}
	return nil
}

// Value returns the current value of the field as a string.
func (f Field) Value() string { return formatValue(f.value) }

// Type names the field's type for --help.
func (f Field) Type() string {
	switch f.value.Interface().(type) {
	case time.Duration:
		return "duration"
	case []string:
		return "list"
	case map[string]string:
		return "map"
	}
	return f.value.Kind().String()
}

func setValue(v reflect.Value, s string) error {
	switch x := v.Addr().Interface().(type) {
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*x = d
		return nil
	case *[]string:
		*x = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*x = append(*x, p)
			}
		}
		return nil
	case *map[string]string:
		m := map[string]string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("%q is not key=value", p)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		*x = m
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := parseSize(s)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := parseSize(s)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a non-negative integer", s)
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// parseSize accepts plain integers and the suffixes KiB, MiB, GiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, suf.s) {
			mult, s = suf.m, strings.TrimSuffix(s, suf.s)
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n * mult, nil
}

func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case map[string]string:
		var parts []string
		for k, val := range x {
			parts = append(parts, k+"="+val)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}

// flagValue adapts a configuration field to pflag.
type flagValue struct{ f Field }

func (fv flagValue) String() string     { return fv.f.Value() }
func (fv flagValue) Set(s string) error { return setValue(fv.f.value, s) }
func (fv flagValue) Type() string       { return fv.f.Type() }

// BindFlags registers one flag per configuration key (e.g.
// --sensor.snaplen) of the named sections, or of all sections when none is
// named. The flags write into c, which is a scratch copy: Load reads back
// only the flags the user set, so that they win over file and environment.
func BindFlags(fs *pflag.FlagSet, c *Config, sections ...string) {
	for _, f := range Fields(c) {
		if !inSections(f.Key, sections) {
			continue
		}
		fl := fs.VarPF(flagValue{f}, f.Flag, "", f.Help+" (env "+f.Env+")")
		if f.Type() == "bool" {
			fl.NoOptDefVal = "true"
		}
	}
}

// Load builds the configuration in precedence order: defaults, the file
// (if path is not empty), the environment, then the flags already set on
// fs (which must have been bound to a scratch Config with BindFlags and
// parsed). It validates the result.
func Load(path string, fs *pflag.FlagSet) (Config, error) {
	c := Default()
	if path != "" {
		if err := LoadFile(path, &c); err != nil {
			return c, err
		}
	}
	if err := ApplyEnv(&c, os.LookupEnv); err != nil {
		return c, err
	}
	if fs != nil {
		var ferr error
		byKey := map[string]Field{}
		for _, f := range Fields(&c) {
			byKey[f.Flag] = f
		}
		fs.Visit(func(fl *pflag.Flag) {
			f, ok := byKey[fl.Name]
			if !ok || ferr != nil {
				return
			}
			if err := setValue(f.value, fl.Value.String()); err != nil {
				ferr = fmt.Errorf("flag --%s: %w", fl.Name, err)
			}
		})
		if ferr != nil {
			return c, ferr
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

func inSections(key string, sections []string) bool {
	if len(sections) == 0 {
		return true
	}
	for _, s := range sections {
		if strings.HasPrefix(key, s+".") {
			return true
		}
	}
	return false
}
