package meter

import (
	"bytes"
	"context"
	"crypto/sha1"
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
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

//go:embed data/billing-map.csv
var billingCSV []byte

// BillingMeter is the commerce meter a local meter is billed as, with the
// factor that converts a local quantity into the billing unit. Local meters
// without one are kept and shown locally but never billed: there are more
// meters on a stack than Microsoft bills.
type BillingMeter struct {
	LocalMeterKey string         `json:"localMeterId"`
	ID            string         `json:"billingMeterId"`
	Name          string         `json:"name"`
	Category      string         `json:"category"`
	SubCategory   string         `json:"subCategory"`
	Unit          string         `json:"unit"`
	Factor        money.Quantity `json:"factor"`
}

// BillingID derives a stable GUID for a commerce meter whose ID is not
// published (name-based, version 5 layout, in a stackbill namespace). The map
// is editable, so operators can replace it with their price list's MeterId.
func BillingID(category, subCategory, name string) string {
	h := sha1.Sum([]byte("stackbill billing meter\x00" + category + "\x00" + subCategory + "\x00" + name))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// DefaultBillingMap is the shipped local → billing map (data/billing-map.csv),
// built from the facts of reference §4–6.
func DefaultBillingMap() ([]BillingMeter, error) {
	rows, err := csv.NewReader(bytes.NewReader(billingCSV)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("billing map: %w", err)
	}
	var out []BillingMeter
	for i, r := range rows {
		if i == 0 {
			continue
		}
		key, ok := Normalize(r[0])
		if !ok {
			return nil, fmt.Errorf("billing map line %d: local meter %q", i+1, r[0])
		}
		f, err := money.ParseQuantity(r[6])
		if err != nil {
			return nil, fmt.Errorf("billing map line %d: %w", i+1, err)
		}
		id := r[1]
		if id == "stackbill-defined" {
			id = BillingID(r[3], r[4], r[2])
		}
		out = append(out, BillingMeter{LocalMeterKey: key, ID: strings.ToLower(id), Name: r[2], Category: r[3], SubCategory: r[4], Unit: r[5], Factor: f})
	}
	return out, nil
}

// MapVersion is one version of the billing map, in force from EffectiveFrom
// until the next version's.
type MapVersion struct {
	Version       int            `json:"version"`
	EffectiveFrom time.Time      `json:"effectiveFrom"`
	Meters        []BillingMeter `json:"meters"`
}

// BillingMap holds every version of the local → billing map.
type BillingMap struct {
	db    *store.DB
	clock *clock.Clock

	mu       sync.RWMutex
	versions []MapVersion // ascending by EffectiveFrom
	loaded   bool
}

// NewBillingMap builds a BillingMap; the shipped map becomes version 1,
// effective from the beginning of time, the first time it is needed.
func NewBillingMap(db *store.DB, c *clock.Clock) *BillingMap { return &BillingMap{db: db, clock: c} }

func (m *BillingMap) load(ctx context.Context) error {
	m.mu.RLock()
	loaded := m.loaded
	m.mu.RUnlock()
	if loaded {
		return nil
	}
	var n int
	if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM meter_map`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		def, err := DefaultBillingMap()
		if err != nil {
			return err
		}
		if err := m.write(ctx, "stackbill (default map)", 1, time.Unix(0, 0).UTC(), def); err != nil && !store.IsUniqueViolation(err) {
			return err
		}
	}
	rows, err := m.db.QueryContext(ctx, `SELECT version, effective_from_us, local_meter_key, billing_meter_id, billing_meter_name, billing_category, billing_subcategory, billing_unit, factor
		FROM meter_map ORDER BY effective_from_us, version, local_meter_key`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var vs []MapVersion
	for rows.Next() {
		var b BillingMeter
		var v int
		var from int64
		if err := rows.Scan(&v, &from, &b.LocalMeterKey, &b.ID, &b.Name, &b.Category, &b.SubCategory, &b.Unit, &b.Factor); err != nil {
			return err
		}
		if len(vs) == 0 || vs[len(vs)-1].Version != v {
			vs = append(vs, MapVersion{Version: v, EffectiveFrom: clock.FromMicros(from)})
		}
		vs[len(vs)-1].Meters = append(vs[len(vs)-1].Meters, b)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	m.versions, m.loaded = vs, true
	m.mu.Unlock()
	return nil
}

func (m *BillingMap) write(ctx context.Context, actor string, version int, from time.Time, meters []BillingMeter) error {
	return m.db.Write(ctx, func(tx *store.Tx) error {
		for _, b := range meters {
			if _, err := tx.ExecContext(ctx, `INSERT INTO meter_map (version, effective_from_us, local_meter_key, billing_meter_id, billing_meter_name, billing_category, billing_subcategory,
				billing_unit, factor, created_at_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				version, clock.Micros(from), b.LocalMeterKey, b.ID, b.Name, b.Category, b.SubCategory, b.Unit, b.Factor.String(), clock.Micros(m.clock.Now()), actor); err != nil {
				return err
			}
		}
		return audit.Append(ctx, tx, audit.Entry{At: m.clock.Now(), Actor: actor, Action: "meterMap.publish", Kind: "meterMap", ID: fmt.Sprint(version),
			After: audit.JSON(MapVersion{Version: version, EffectiveFrom: from.UTC(), Meters: meters})})
	})
}

// At returns the billing meter of a local meter in force at t, and the map
// version it came from. ok is false for a local-only meter.
func (m *BillingMap) At(ctx context.Context, localMeterKey string, t time.Time) (BillingMeter, int, bool, error) {
	if err := m.load(ctx); err != nil {
		return BillingMeter{}, 0, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.versionAt(t)
	if !ok {
		return BillingMeter{}, 0, false, nil
	}
	for _, b := range v.Meters {
		if b.LocalMeterKey == localMeterKey {
			return b, v.Version, true, nil
		}
	}
	return BillingMeter{}, v.Version, false, nil
}

// Billing returns the billing meter id as the map in force at t names it,
// for labels (ok false when no local meter maps to it then).
func (m *BillingMap) Billing(ctx context.Context, id string, t time.Time) (BillingMeter, bool, error) {
	if err := m.load(ctx); err != nil {
		return BillingMeter{}, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.versionAt(t)
	if !ok {
		return BillingMeter{}, false, nil
	}
	for _, b := range v.Meters {
		if strings.EqualFold(b.ID, id) {
			return b, true, nil
		}
	}
	return BillingMeter{}, false, nil
}

// versionAt is the version in force at t; the caller holds m.mu.
func (m *BillingMap) versionAt(t time.Time) (MapVersion, bool) {
	i := sort.Search(len(m.versions), func(i int) bool { return m.versions[i].EffectiveFrom.After(t) }) - 1
	if i < 0 {
		return MapVersion{}, false
	}
	return m.versions[i], true
}

// Versions lists every version of the map.
func (m *BillingMap) Versions(ctx context.Context) ([]MapVersion, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]MapVersion(nil), m.versions...), nil
}

// Publish adds a new complete version of the map, effective from a time that
// is not before the latest version's. Usage already forwarded keeps the
// version it was charged with.
func (m *BillingMap) Publish(ctx context.Context, p auth.Principal, from time.Time, meters []BillingMeter) (MapVersion, error) {
	if p.Role != auth.RoleOperator {
		return MapVersion{}, arm.Forbidden(p.Actor(), "meterMap/write", "/v1/meter-map")
	}
	seen := map[string]bool{}
	for i := range meters {
		b := &meters[i]
		key, ok := Normalize(b.LocalMeterKey)
		if !ok {
			return MapVersion{}, arm.InvalidRequest(fmt.Sprintf("meters[%d].localMeterId", i), "'%s' is not a meter ID.", b.LocalMeterKey)
		}
		id, ok := arm.CanonicalGUID(b.ID)
		if !ok {
			return MapVersion{}, arm.InvalidRequest(fmt.Sprintf("meters[%d].billingMeterId", i), "'%s' is not a GUID.", b.ID)
		}
		if b.Factor.Sign() <= 0 || b.Unit == "" || b.Name == "" {
			return MapVersion{}, arm.InvalidRequest(fmt.Sprintf("meters[%d]", i), "Each entry needs a name, a unit and a positive factor.")
		}
		if seen[key] {
			return MapVersion{}, arm.InvalidRequest(fmt.Sprintf("meters[%d].localMeterId", i), "The local meter %s is mapped twice.", b.LocalMeterKey)
		}
		seen[key] = true
		b.LocalMeterKey, b.ID = key, id
	}
	vs, err := m.Versions(ctx)
	if err != nil {
		return MapVersion{}, err
	}
	latest := vs[len(vs)-1]
	if from.Before(latest.EffectiveFrom) {
		return MapVersion{}, arm.InvalidRequest("effectiveFrom", "effectiveFrom %s is before the latest version's (%s); versions take effect in order.",
			from.Format(time.RFC3339), latest.EffectiveFrom.Format(time.RFC3339))
	}
	v := MapVersion{Version: latest.Version + 1, EffectiveFrom: from.UTC(), Meters: meters}
	if err := m.write(ctx, p.Actor(), v.Version, v.EffectiveFrom, meters); err != nil {
		return MapVersion{}, err
	}
	m.mu.Lock()
	m.loaded = false
	m.mu.Unlock()
	return v, m.load(ctx)
}
