package minutes

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"google.golang.org/protobuf/proto"

	"github.com/apiscout/apiscout/storage"
)

// savedMinute is an open minute in a checkpoint.
type savedMinute struct {
	Minute storage.EndpointMinute `json:"minute"`
	Sketch []byte                 `json:"sketch"` // DDSketch protobuf
}

// Export serialises the open minutes of the named services, for a
// checkpoint: a restarted analyzer finishes them with the calls counted
// before the restart.
func (a *Aggregator) Export(services []string) ([]byte, error) {
	out := []savedMinute{}
	for k, c := range a.open {
		if !slices.Contains(services, k.service) {
			continue
		}
		b, err := proto.Marshal(c.sketch.ToProto())
		if err != nil {
			return nil, fmt.Errorf("minutes: %w", err)
		}
		out = append(out, savedMinute{Minute: c.m, Sketch: b})
	}
	slices.SortFunc(out, func(x, y savedMinute) int {
		if c := x.Minute.Minute.Compare(y.Minute.Minute); c != 0 {
			return c
		}
		return compareEndpoint(x.Minute, y.Minute)
	})
	return json.Marshal(out)
}

// Import loads minutes Export wrote, replacing open minutes of the same
// endpoint and minute.
func (a *Aggregator) Import(b []byte) error {
	var in []savedMinute
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("minutes: %w", err)
	}
	for _, sm := range in {
		var pb sketchpb.DDSketch
		if err := proto.Unmarshal(sm.Sketch, &pb); err != nil {
			return fmt.Errorf("minutes %s %s %s: %w", sm.Minute.Service, sm.Minute.Method, sm.Minute.Path, err)
		}
		sk, err := ddsketch.FromProto(&pb)
		if err != nil {
			return fmt.Errorf("minutes %s %s %s: %w", sm.Minute.Service, sm.Minute.Method, sm.Minute.Path, err)
		}
		m := sm.Minute
		m.Minute = m.Minute.UTC()
		a.open[key{m.Service, m.Method, m.Path, m.Minute.Unix()}] = &acc{m: m, sketch: sk}
	}
	return nil
}

// Forget drops the open minutes of the named services.
func (a *Aggregator) Forget(services []string) {
	for k := range a.open {
		if slices.Contains(services, k.service) {
			delete(a.open, k)
		}
	}
}
