package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/apiscout/apiscout/analyzer"
	"github.com/apiscout/apiscout/analyzer/api"
	"github.com/apiscout/apiscout/analyzer/template"
	"github.com/apiscout/apiscout/storage"
)

// templatesKey is the checkpoint key under which the result store keeps
// the template decisions made through the REST API.
const templatesKey = "templates"

// checkpointer is the part of a result store that keeps the decisions.
type checkpointer interface {
	SaveCheckpoint(ctx context.Context, key string, data []byte, offsets map[int]int64) error
	LoadCheckpoint(ctx context.Context, key string) (storage.Checkpoint, error)
}

// storedTemplates is the checkpoint's data.
type storedTemplates struct {
	Version   int                 `json:"version"`
	Decisions []template.Decision `json:"decisions"`
}

// templateKeeper saves the engine's decisions in the store. Each change
// reads the stored list, changes it and saves it whole, under one lock,
// and the engine then takes the stored list as its own: analyzers sharing
// a store pick up each other's decisions at their next change or start.
// (Two analyzers changing decisions at the same instant can still lose one
// of the two changes: the store keeps the latest save.)
type templateKeeper struct {
	mu    sync.Mutex
	store checkpointer
}

// openEngine builds the analyzer's engine (newEngine) and puts in force
// the template decisions kept in store, which also keeps later ones.
func openEngine(ctx context.Context, a *app, store any) (*lockedEngine, error) {
	eng, err := newEngine(a)
	if err != nil {
		return nil, err
	}
	cp, ok := store.(checkpointer)
	if !ok {
		a.log.Warn("the result store keeps no checkpoints: template decisions made through the API last until the analyzer stops")
		return eng, nil
	}
	eng.templates.store = cp
	ds, err := loadTemplates(ctx, cp)
	if err != nil {
		return nil, err
	}
	if err := eng.e.SetTemplates(ds); err != nil {
		a.log.Warn("stored template decisions skipped", zap.Error(err))
	}
	if len(ds) > 0 {
		a.log.Info("template decisions restored", zap.Int("decisions", len(ds)))
	}
	return eng, nil
}

func loadTemplates(ctx context.Context, cp checkpointer) ([]template.Decision, error) {
	c, err := cp.LoadCheckpoint(ctx, templatesKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("template decisions: %w", err)
	}
	var st storedTemplates
	if err := json.Unmarshal(c.Data, &st); err != nil {
		return nil, fmt.Errorf("template decisions: checkpoint %s: %w", templatesKey, err)
	}
	return st.Decisions, nil
}

// Templates lists the decisions in force for a service (api.TemplateEditor).
func (l *lockedEngine) Templates(_ context.Context, service string) ([]api.TemplateRule, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []api.TemplateRule
	for _, d := range l.e.Templates(service) {
		out = append(out, api.TemplateRule{Decision: d.Decision, Config: d.Config})
	}
	return out, nil
}

// AddTemplate saves a decision, then puts it in force (api.TemplateEditor).
func (l *lockedEngine) AddTemplate(ctx context.Context, d template.Decision) (bool, error) {
	return l.changeTemplates(ctx, d, true, func(stored []template.Decision) ([]template.Decision, error) {
		for _, x := range l.e.Templates(d.Service) {
			if x.Decision == d && x.Config {
				return stored, nil
			}
			if d.Conflicts(x.Decision) {
				return nil, fmt.Errorf("%w: %s contradicts %s", api.ErrTemplateConflict, d, x.Decision)
			}
		}
		if slices.Contains(stored, d) {
			return stored, nil
		}
		return append(slices.Clone(stored), d), nil
	})
}

// RemoveTemplate saves the list without a decision, then withdraws it
// (api.TemplateEditor).
func (l *lockedEngine) RemoveTemplate(ctx context.Context, d template.Decision) error {
	_, err := l.changeTemplates(ctx, d, false, func(stored []template.Decision) ([]template.Decision, error) {
		inForce := false
		for _, x := range l.e.Templates(d.Service) {
			if x.Decision == d && x.Config {
				return nil, fmt.Errorf("%w: %s comes from analyzer.templates; change it there", api.ErrTemplateConflict, d)
			}
			inForce = inForce || x.Decision == d
		}
		i := slices.Index(stored, d)
		switch {
		case i >= 0:
			return slices.Delete(slices.Clone(stored), i, i+1), nil
		case inForce:
			return stored, nil // another analyzer withdrew it from the store
		}
		return nil, api.ErrNotFound
	})
	return err
}

// changeTemplates applies change to the stored decisions (the engine's
// own without a store), saves the result and makes it the engine's. want
// says whether d is to be in force afterwards; added reports that it is
// and was not before.
func (l *lockedEngine) changeTemplates(ctx context.Context, d template.Decision, want bool, change func([]template.Decision) ([]template.Decision, error)) (added bool, err error) {
	k := &l.templates
	k.mu.Lock()
	defer k.mu.Unlock()
	inForce := func() bool {
		return slices.ContainsFunc(l.e.Templates(d.Service), func(x analyzer.TemplateDecision) bool { return x.Decision == d })
	}
	l.mu.Lock()
	stored, before := l.e.OperatorTemplates(), inForce()
	l.mu.Unlock()
	if k.store != nil {
		if stored, err = loadTemplates(ctx, k.store); err != nil {
			return false, err
		}
	}
	l.mu.Lock()
	next, err := change(stored)
	l.mu.Unlock()
	if err != nil {
		return false, err
	}
	if k.store != nil && !slices.Equal(next, stored) {
		b, err := json.Marshal(storedTemplates{Version: 1, Decisions: next})
		if err != nil {
			return false, err
		}
		if err := k.store.SaveCheckpoint(ctx, templatesKey, b, nil); err != nil {
			return false, fmt.Errorf("template decisions: %w", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// An error here is about other stored decisions (another analyzer's,
	// contradicting this one's configuration): they are skipped, and
	// only the outcome for d matters to the caller.
	setErr := l.e.SetTemplates(next)
	after := inForce()
	if after != want {
		if errors.Is(setErr, analyzer.ErrTemplateConflict) {
			return false, fmt.Errorf("%w: %v", api.ErrTemplateConflict, setErr)
		}
		return false, fmt.Errorf("template decision %s: %w", d, setErr)
	}
	return after && !before, nil
}
