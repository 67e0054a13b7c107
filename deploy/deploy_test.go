package deploy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/internal/config"
)

// settings maps every APISCOUT_* variable to its key.
func settings() map[string]string {
	c := config.Default()
	m := map[string]string{}
	for _, f := range config.Fields(&c) {
		m[f.Env] = f.Key
	}
	return m
}

func readYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// get walks a decoded YAML tree by keys and indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, x.(string))
	}
	sort.Strings(out)
	return out
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return p
}

func k8sDocs(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) < 5 {
		t.Fatalf("k8s manifests: %v", files)
	}
	byKind := map[string]map[string]any{}
	for _, f := range files {
		for _, d := range readYAMLDocs(t, f) {
			kind, _ := d["kind"].(string)
			name, _ := get(d, "metadata", "name").(string)
			if d["apiVersion"] == nil || kind == "" || name == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			byKind[kind+"/"+name] = d
		}
	}
	return byKind
}

func TestK8sManifests(t *testing.T) {
	docs := k8sDocs(t)
	env := settings()
	for _, want := range []string{"Namespace/apiscout", "ConfigMap/apiscout-config", "Secret/apiscout-secrets", "DaemonSet/apiscout-sensor", "Deployment/apiscout-analyzer", "Service/apiscout-ui"} {
		if docs[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	ds := docs["DaemonSet/apiscout-sensor"]
	if get(ds, "spec", "template", "spec", "hostNetwork") != true {
		t.Error("sensor DaemonSet: hostNetwork is not true")
	}
	sc := get(ds, "spec", "template", "spec", "containers", 0, "securityContext")
	if got := strs(get(sc, "capabilities", "add")); !slices.Equal(got, []string{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("sensor capabilities add %v, want exactly NET_RAW and NET_ADMIN", got)
	}
	if got := strs(get(sc, "capabilities", "drop")); !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("sensor capabilities drop %v, want ALL", got)
	}
	if get(sc, "privileged") == true || get(sc, "runAsNonRoot") != true {
		t.Errorf("sensor must run unprivileged and non-root: %v", sc)
	}
	dep := docs["Deployment/apiscout-analyzer"]
	asc := get(dep, "spec", "template", "spec", "containers", 0, "securityContext")
	if get(asc, "capabilities", "add") != nil || get(asc, "allowPrivilegeEscalation") != false {
		t.Errorf("analyzer needs no capability: %v", asc)
	}
	// The configuration the pods get: the ConfigMap's file, then the
	// Secret's variables, must be valid, and the UI it configures must
	// be one the server agrees to start.
	file, _ := get(docs["ConfigMap/apiscout-config"], "data", "apiscout.yaml").(string)
	c := config.Default()
	if err := config.Parse([]byte(file), &c); err != nil {
		t.Fatalf("ConfigMap apiscout.yaml: %v", err)
	}
	secret, _ := get(docs["Secret/apiscout-secrets"], "stringData").(map[string]any)
	for k := range secret {
		if _, ok := env[k]; !ok {
			t.Errorf("Secret key %s is not a setting's variable", k)
		}
	}
	if err := config.ApplyEnv(&c, func(k string) (string, bool) { v, ok := secret[k].(string); return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("ConfigMap + Secret: %v", err)
	}
	if _, err := api.New(api.Options{Config: c.UI, Reader: api.NewMemory()}); err != nil {
		t.Errorf("the analyzer would not start its UI: %v", err)
	}
	for _, kind := range []string{"DaemonSet/apiscout-sensor", "Deployment/apiscout-analyzer"} {
		for _, e := range asList(get(docs[kind], "spec", "template", "spec", "containers", 0, "env")) {
			if name, _ := get(e, "name").(string); env[name] == "" {
				t.Errorf("%s: env %s is not a setting's variable", kind, name)
			}
		}
		if cmd := strs(get(docs[kind], "spec", "template", "spec", "containers", 0, "args")); len(cmd) == 0 {
			t.Errorf("%s: no args", kind)
		}
	}
	// The Service targets the port the UI listens on.
	if p := portOf(t, c.UI.Listen); p != "8080" || get(docs["Service/apiscout-ui"], "spec", "ports", 0, "port") != 8080 {
		t.Errorf("UI port %s and Service port disagree", p)
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

func TestCompose(t *testing.T) {
	docs := readYAMLDocs(t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	d := docs[0]
	env := settings()
	def := config.Default()
	svcs, _ := d["services"].(map[string]any)
	for _, name := range []string{"kafka", "clickhouse", "grafana", "sensor", "analyzer"} {
		if svcs[name] == nil {
			t.Errorf("no service %s", name)
		}
	}
	declared, _ := d["volumes"].(map[string]any)
	interp := regexp.MustCompile(`^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$`)
	for name, s := range svcs {
		// Volumes: named ones are declared, bind mounts exist.
		for _, v := range asList(get(s, "volumes")) {
			src := strings.Split(v.(string), ":")[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s: bind mount %s: %v", name, src, err)
				}
			} else if _, ok := declared[src]; !ok {
				t.Errorf("%s: volume %s is not declared", name, src)
			}
		}
		// Every APISCOUT_* variable given to apiscout is a setting.
		if name == "sensor" || name == "analyzer" {
			for k, v := range get(s, "environment").(map[string]any) {
				if _, ok := env[k]; !ok {
					t.Errorf("%s: %s is not a setting's variable", name, k)
				}
				if sv, _ := v.(string); strings.Contains(sv, "${") && !interp.MatchString(sv) {
					t.Errorf("%s: %s=%q: interpolate whole values only", name, k, sv)
				}
			}
		}
	}
	// Ports agree with the configuration.
	an := get(svcs, "analyzer", "environment").(map[string]any)
	uiPort := portOf(t, an["APISCOUT_UI_LISTEN"].(string))
	if uiPort != portOf(t, def.UI.Listen) {
		t.Errorf("analyzer UI port %s, default %s", uiPort, def.UI.Listen)
	}
	if !slices.Contains(asStrings(get(svcs, "analyzer", "ports")), "127.0.0.1:"+uiPort+":"+uiPort) {
		t.Errorf("analyzer does not publish the UI port %s on loopback", uiPort)
	}
	if an["APISCOUT_UI_READ_TOKENS"] == nil {
		t.Error("analyzer listens off loopback without tokens")
	}
	chPort := portOf(t, def.Storage.ClickHouseAddr[0])
	if !strings.HasSuffix(an["APISCOUT_STORAGE_CLICKHOUSE_ADDR"].(string), ":"+chPort) || !slices.Contains(asStrings(get(svcs, "clickhouse", "ports")), "127.0.0.1:"+chPort+":"+chPort) {
		t.Errorf("ClickHouse native port %s not used consistently", chPort)
	}
	kafkaPort := portOf(t, def.Kafka.Brokers[0])
	sens := get(svcs, "sensor", "environment").(map[string]any)
	if sens["APISCOUT_KAFKA_BROKERS"] != def.Kafka.Brokers[0] {
		t.Errorf("sensor brokers %v, the default (and the EXTERNAL listener) is %s", sens["APISCOUT_KAFKA_BROKERS"], def.Kafka.Brokers[0])
	}
	adv := get(svcs, "kafka", "environment", "KAFKA_ADVERTISED_LISTENERS").(string)
	if !strings.Contains(adv, "EXTERNAL://"+def.Kafka.Brokers[0]) || !strings.Contains(adv, "INTERNAL://"+an["APISCOUT_KAFKA_BROKERS"].(string)) {
		t.Errorf("kafka advertises %s; sensor uses %s, analyzer %s", adv, def.Kafka.Brokers[0], an["APISCOUT_KAFKA_BROKERS"])
	}
	if !slices.Contains(asStrings(get(svcs, "kafka", "ports")), "127.0.0.1:"+kafkaPort+":"+kafkaPort) {
		t.Errorf("kafka does not publish %s on loopback", kafkaPort)
	}
	// Every published port is on loopback.
	for name, s := range svcs {
		for _, p := range asStrings(get(s, "ports")) {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
		}
	}
	// Grafana: the dashboards land where the provider reads them, and the
	// data source reaches the ClickHouse service with its user.
	gv := asStrings(get(svcs, "grafana", "volumes"))
	prov := readYAMLDocs(t, "grafana/provisioning/dashboards/apiscout.yaml")
	dashPath, _ := get(prov[0], "providers", 0, "options", "path").(string)
	if !slices.Contains(gv, "../dashboards:"+dashPath+":ro") || !slices.Contains(gv, "./grafana/provisioning:/etc/grafana/provisioning:ro") {
		t.Errorf("grafana volumes %v: dashboards must be mounted at %s", gv, dashPath)
	}
	ge := get(svcs, "grafana", "environment").(map[string]any)
	ce := get(svcs, "clickhouse", "environment").(map[string]any)
	if ge["CLICKHOUSE_HOST"] != "clickhouse" || ge["CLICKHOUSE_PORT"] != chPort || ge["CLICKHOUSE_USER"] != ce["CLICKHOUSE_USER"] || ge["CLICKHOUSE_DATABASE"] != ce["CLICKHOUSE_DB"] {
		t.Errorf("grafana data source %v does not match the clickhouse service %v", ge, ce)
	}
	if an["APISCOUT_STORAGE_CLICKHOUSE_USER"] != ce["CLICKHOUSE_USER"] || ce["CLICKHOUSE_DB"] != def.Storage.ClickHouseDatabase {
		t.Errorf("analyzer user %v / database default %s do not match the clickhouse service %v", an["APISCOUT_STORAGE_CLICKHOUSE_USER"], def.Storage.ClickHouseDatabase, ce)
	}
	if got := strs(get(svcs, "sensor", "cap_add")); !slices.Equal(got, []string{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("sensor cap_add %v", got)
	}
	if got := strs(get(svcs, "sensor", "cap_drop")); !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("sensor cap_drop %v", got)
	}
}

func asStrings(v any) []string {
	var out []string
	for _, x := range asList(v) {
		out = append(out, x.(string))
	}
	return out
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"CGO_ENABLED=0", "setcap cap_net_raw,cap_net_admin+ep", "USER 65532:65532", "./cmd/apiscout"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(s, "\nFROM "); n < 2 {
		t.Errorf("Dockerfile has %d stages, want a multi-stage build", n+1)
	}
	for _, port := range []string{portOf(t, config.Default().UI.Listen), portOf(t, config.Default().Metrics.Listen)} {
		if !regexp.MustCompile(`EXPOSE .*\b` + port + `\b`).MatchString(s) {
			t.Errorf("Dockerfile does not expose %s", port)
		}
	}
}

func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			out = append(out, strings.Fields(v)...)
		}
	}
	return out
}

func TestSystemdUnits(t *testing.T) {
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 2 {
		t.Fatalf("units: %v", units)
	}
	if got := unitValues(t, "systemd/apiscout-sensor.service", "CapabilityBoundingSet"); !slices.Equal(got, []string{"CAP_NET_RAW", "CAP_NET_ADMIN"}) {
		t.Errorf("sensor CapabilityBoundingSet %v", got)
	}
	if got := unitValues(t, "systemd/apiscout-analyzer.service", "CapabilityBoundingSet"); len(got) != 0 {
		t.Errorf("analyzer CapabilityBoundingSet %v, want empty", got)
	}
	for _, u := range units {
		if got := unitValues(t, u, "User"); !slices.Equal(got, []string{"apiscout"}) {
			t.Errorf("%s: User %v", u, got)
		}
		exec := unitValues(t, u, "ExecStart")
		if len(exec) < 2 || exec[0] != "/usr/local/bin/apiscout" || (exec[1] != "sensor" && exec[1] != "analyzer") {
			t.Errorf("%s: ExecStart %v", u, exec)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: units checked by content only")
		return
	}
	// verify wants ExecStart's binary to exist: point it at one that does.
	dir := t.TempDir()
	for _, u := range units {
		b, _ := os.ReadFile(u)
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/apiscout"), []byte("/bin/true"))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(u)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"verify"}
	for _, u := range units {
		args = append(args, filepath.Join(dir, filepath.Base(u)))
	}
	out, err := exec.Command(sa, args...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
