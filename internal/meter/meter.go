// Package meter is the stack's catalogue of local usage meters: every meter
// Azure Stack Hub documents (shipped as data, data/meters.csv) plus the
// meters an operator adds.
//
// Meter IDs are compared case-insensitively and with or without hyphens,
// because Azure Stack documents some IDs without hyphens and others in mixed
// case. A meter's Kind says how its quantities aggregate over time: an Amount
// (vCPU-hours, GB, requests) is split across hours in proportion to time and
// summed; a Level (IP addresses, SSL bindings) is a count held for a time, so
// an hour holds count × fraction of the hour, and a daily query returns
// count × hours, as Azure does.
package meter

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

//go:embed data/meters.csv
var builtinCSV []byte

// Kind says how a meter's quantities aggregate over time.
type Kind string

const (
	Amount Kind = "Amount"
	Level  Kind = "Level"
)

// Meter is a local usage meter.
type Meter struct {
	ID       string `json:"id"` // as documented (display form)
	Name     string `json:"name"`
	Unit     string `json:"unit"`
	Category string `json:"category"`
	Kind     Kind   `json:"kind"`
	Notes    string `json:"notes,omitempty"`
	Builtin  bool   `json:"builtin"`
}

// Normalize returns the comparison key of a meter ID: 32 lower-case hex
// digits. ok is false when id is not a GUID with or without hyphens.
func Normalize(id string) (string, bool) {
	id = strings.TrimSpace(id)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "{"), "}")
	var b [32]byte
	n := 0
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", false
		}
		if n == 32 {
			return "", false
		}
		b[n] = c
		n++
	}
	if n != 32 {
		return "", false
	}
	return string(b[:]), true
}

// levelUnits are units that name a count held over time rather than an amount.
var levelUnits = map[string]bool{
	"ip addresses": true, "ip address": true, "per sni ssl binding": true, "per ip based ssl binding": true,
}

func kindOf(unit string) Kind {
	if levelUnits[strings.ToLower(strings.TrimSpace(unit))] {
		return Level
	}
	return Amount
}

// Builtin parses the shipped catalogue. Rows without a fixed GUID (App
// Service custom worker tiers, whose ID is derived per tier) are left for
// operators to add.
func Builtin() ([]Meter, error) {
	r := csv.NewReader(bytes.NewReader(builtinCSV))
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("meter catalogue: %w", err)
	}
	var out []Meter
	for i, row := range rows {
		if i == 0 {
			continue
		}
		if len(row) < 5 {
			return nil, fmt.Errorf("meter catalogue line %d: %d columns", i+1, len(row))
		}
		if _, ok := Normalize(row[0]); !ok {
			continue
		}
		out = append(out, Meter{ID: row[0], Name: row[1], Unit: row[2], Category: row[3], Notes: row[4], Kind: kindOf(row[2]), Builtin: true})
	}
	return out, nil
}

// Catalogue answers meter lookups from memory. Operator-added meters live in
// the database; a lookup that misses reloads them once, so a meter added
// through another instance is found without a restart.
type Catalogue struct {
	db    *store.DB
	clock *clock.Clock

	mu       sync.RWMutex
	byKey    map[string]Meter
	loadedAt time.Time
}

// NewCatalogue loads the built-in and custom meters.
func NewCatalogue(ctx context.Context, db *store.DB, c *clock.Clock) (*Catalogue, error) {
	cat := &Catalogue{db: db, clock: c}
	return cat, cat.reload(ctx)
}

func (c *Catalogue) reload(ctx context.Context) error {
	builtin, err := Builtin()
	if err != nil {
		return err
	}
	m := make(map[string]Meter, len(builtin)+8)
	for _, b := range builtin {
		k, _ := Normalize(b.ID)
		m[k] = b
	}
	rows, err := c.db.QueryContext(ctx, `SELECT id, name, unit, category, kind FROM meters`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var mt Meter
		var kind string
		if err := rows.Scan(&mt.ID, &mt.Name, &mt.Unit, &mt.Category, &kind); err != nil {
			return err
		}
		mt.Kind = Kind(kind)
		k, _ := Normalize(mt.ID)
		m[k] = mt
	}
	if err := rows.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.byKey, c.loadedAt = m, time.Now()
	c.mu.Unlock()
	return nil
}

// Lookup finds a meter by any spelling of its ID.
func (c *Catalogue) Lookup(ctx context.Context, id string) (Meter, bool) {
	k, ok := Normalize(id)
	if !ok {
		return Meter{}, false
	}
	c.mu.RLock()
	m, found := c.byKey[k]
	stale := time.Since(c.loadedAt) > time.Second
	c.mu.RUnlock()
	if found || !stale {
		return m, found
	}
	if err := c.reload(ctx); err != nil {
		return Meter{}, false
	}
	c.mu.RLock()
	m, found = c.byKey[k]
	c.mu.RUnlock()
	return m, found
}

// List returns every meter, ordered by category and name.
func (c *Catalogue) List(ctx context.Context) ([]Meter, error) {
	if err := c.reload(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	out := make([]Meter, 0, len(c.byKey))
	for _, m := range c.byKey {
		out = append(out, m)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Category != out[j].Category {
			return out[i].Category < out[j].Category
		}
		return out[i].Name+out[i].ID < out[j].Name+out[j].ID
	})
	return out, nil
}

// Add registers an operator's own meter, e.g. an App Service custom worker
// tier. A built-in meter cannot be redefined.
func (c *Catalogue) Add(ctx context.Context, p auth.Principal, m Meter) (Meter, error) {
	if p.Role != auth.RoleStackOperator && p.Role != auth.RoleOperator || p.SubscriptionID != "" {
		return Meter{}, arm.Forbidden(p.Actor(), "meters/write", "/v1/meters")
	}
	k, ok := Normalize(m.ID)
	if !ok {
		return Meter{}, arm.InvalidRequest("id", "The meter id '%s' is not a GUID (with or without hyphens).", m.ID)
	}
	m.Name, m.Unit, m.Category = strings.TrimSpace(m.Name), strings.TrimSpace(m.Unit), strings.TrimSpace(m.Category)
	if m.Name == "" || m.Unit == "" {
		return Meter{}, arm.InvalidRequest("name", "A meter needs a name and a unit.")
	}
	if m.Kind == "" {
		m.Kind = kindOf(m.Unit)
	}
	if m.Kind != Amount && m.Kind != Level {
		return Meter{}, arm.InvalidRequest("kind", "The meter kind '%s' is not Amount or Level.", m.Kind)
	}
	if existing, found := c.Lookup(ctx, k); found && existing.Builtin {
		return Meter{}, arm.Errorf(arm.Invalid, "BuiltinMeter", "The meter %s (%s) is built in and cannot be redefined.", existing.ID, existing.Name)
	}
	m.Builtin = false
	err := c.db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meters (key, id, name, unit, category, kind, created_at_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET id = excluded.id, name = excluded.name, unit = excluded.unit, category = excluded.category, kind = excluded.kind`,
			k, m.ID, m.Name, m.Unit, m.Category, string(m.Kind), clock.Micros(c.clock.Now()), p.Actor())
		if err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: c.clock.Now(), Actor: p.Actor(), Action: "meter.put", Kind: "meter", ID: k, After: audit.JSON(m)})
	})
	if err != nil {
		return Meter{}, err
	}
	return m, c.reload(ctx)
}
