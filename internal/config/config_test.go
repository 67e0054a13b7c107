package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestGoodFile(t *testing.T) {
	c, err := Load("testdata/good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" || c.Sensor.Snaplen != 1500 || c.Sensor.IdleTimeout != 30*time.Second ||
		len(c.Sensor.Pcap) != 2 || c.Kafka.Brokers[0] != "k1:9092" {
		t.Fatalf("unexpected config: %+v", c)
	}
	if c.Kafka.Topic != "apiscout.transactions" {
		t.Fatalf("defaults lost: topic %q", c.Kafka.Topic)
	}
}

// Each bad fixture must fail with a message that names what to fix.
func TestBadFiles(t *testing.T) {
	want := map[string]string{
		"unknown-key.bad.yml":     "line 4: field snaplenn not found",
		"wrong-type.bad.yml":      "line 2: cannot unmarshal !!str `many` into int",
		"bad-level.bad.yml":       `log.level: "loud"`,
		"bad-output.bad.yml":      `sensor.output: "carrier-pigeon"`,
		"bad-compression.bad.yml": `kafka.compression: "brotli"`,
		"duplicate.bad.yml":       `mapping key "log" already defined`,
	}
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) != len(want) {
		t.Fatalf("%d bad fixtures, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		_, err := Load(f, nil)
		if err == nil {
			t.Errorf("%s: no error", f)
			continue
		}
		if w := want[filepath.Base(f)]; !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not contain %q", f, err, w)
		}
	}
}

func TestPrecedence(t *testing.T) {
	t.Setenv("APISCOUT_SENSOR_SNAPLEN", "2000")
	t.Setenv("APISCOUT_LOG_FORMAT", "json")
	t.Setenv("APISCOUT_SENSOR_RING_SIZE", "8MiB")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	scratch := Default()
	BindFlags(fs, &scratch)
	if err := fs.Parse([]string{"--sensor.snaplen=3000", "--sensor.midstream=false"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load("testdata/good.yml", fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sensor.Snaplen != 3000 {
		t.Errorf("flag must beat env and file: snaplen %d", c.Sensor.Snaplen)
	}
	if c.Log.Format != "json" || c.Log.Level != "debug" {
		t.Errorf("env must beat file, file must beat default: %+v", c.Log)
	}
	if c.Sensor.RingSize != 8<<20 || c.Sensor.Midstream {
		t.Errorf("ring %d midstream %v", c.Sensor.RingSize, c.Sensor.Midstream)
	}
}

func TestBadEnv(t *testing.T) {
	t.Setenv("APISCOUT_SENSOR_IDLE_TIMEOUT", "soon")
	_, err := Load("", nil)
	if err == nil || !strings.Contains(err.Error(), "APISCOUT_SENSOR_IDLE_TIMEOUT") {
		t.Fatalf("error must name the variable: %v", err)
	}
}

func TestEveryKeyHasHelpAndEnv(t *testing.T) {
	c := Default()
	for _, f := range Fields(&c) {
		if f.Help == "" {
			t.Errorf("%s has no help text", f.Key)
		}
		if !strings.HasPrefix(f.Env, "APISCOUT_") {
			t.Errorf("%s env %s", f.Key, f.Env)
		}
	}
}

func TestEmptyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.yml")
	os.WriteFile(p, nil, 0o600)
	if _, err := Load(p, nil); err != nil {
		t.Fatal(err)
	}
}
