package usage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
)

// Granularity of usage aggregates.
type Granularity string

const (
	Hourly Granularity = "Hourly"
	Daily  Granularity = "Daily"
)

// PageSize is the most aggregates one page returns, as Azure Stack does.
const PageSize = 1000

// Query selects usage aggregates by reported time.
type Query struct {
	Subscriptions []string // in order; each is read in turn
	Start, End    time.Time
	Granularity   Granularity
	ShowDetails   bool
	After         *Cursor
	Limit         int
}

// Cursor is the position after the last row of the previous page.
type Cursor struct {
	Sub      string `json:"s"`
	Meter    string `json:"m"`
	Instance string `json:"i"`
	Hour     int64  `json:"h"`
	Reported int64  `json:"r"`
	// Query binds the cursor to the query that produced it.
	Query string `json:"q"`
}

// Fingerprint identifies a query's parameters, so a continuation token cannot
// be replayed against a different question.
func Fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// InstanceTag is a short stable tag of a resource instance, for resource
// names; it is not a security boundary.
func InstanceTag(instance string) string {
	h := fnv.New64a()
	h.Write([]byte(instance))
	return strconv.FormatUint(h.Sum64(), 36)
}

// Aggregate is one usage bucket of one subscription, meter and (with details)
// resource instance.
type Aggregate struct {
	SubscriptionID string
	Meter          meter.Meter
	Start, End     time.Time
	Quantity       money.Quantity
	ResourceURI    string
	Location       string
	Tags           json.RawMessage
	AdditionalInfo json.RawMessage
	Instance       string
}

type row struct {
	sub, meter, instance              string
	hour, reported                    int64
	qty                               money.Quantity
	resourceURI, location, tags, addl string
}

// Aggregates returns one page of aggregates and the cursor of the next page
// (nil on the last page). Rows are read in index order and grouped as they
// stream, so a page costs about one page of rows whatever the data size.
func (s *Service) Aggregates(ctx context.Context, q Query) ([]Aggregate, *Cursor, error) {
	if q.Limit <= 0 || q.Limit > PageSize {
		q.Limit = PageSize
	}
	if err := s.Settle(ctx, q.End); err != nil {
		return nil, nil, err
	}
	bucket := func(h int64) time.Time {
		t := clock.FromMicros(h)
		if q.Granularity == Daily {
			return clock.DayStart(t)
		}
		return t
	}
	width := time.Hour
	if q.Granularity == Daily {
		width = 24 * time.Hour
	}
	// With details the index order (meter, instance, hour) groups naturally;
	// without, buckets span instances, so rows are ordered by hour first.
	order := []string{"meter_key", "instance", "usage_hour_us", "reported_hour_us"}
	if !q.ShowDetails {
		order = []string{"meter_key", "usage_hour_us", "instance", "reported_hour_us"}
	}
	orderBy := strings.Join(order, ", ")
	var out []Aggregate
	var cur *Aggregate
	type groupKey struct {
		meter, instance string
		bucket          int64
	}
	var curKey groupKey
	var last row
	emit := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	startSub := 0
	if q.After != nil {
		for i, s := range q.Subscriptions {
			if s == q.After.Sub {
				startSub = i
			}
		}
	}
	const chunk = 2000
	for si := startSub; si < len(q.Subscriptions); si++ {
		sub := q.Subscriptions[si]
		pos := []any{"", "", int64(-1 << 62), int64(-1 << 62)}
		if !q.ShowDetails {
			pos = []any{"", int64(-1 << 62), "", int64(-1 << 62)}
		}
		if q.After != nil && q.After.Sub == sub {
			pos = []any{q.After.Meter, q.After.Instance, q.After.Hour, q.After.Reported}
			if !q.ShowDetails {
				pos = []any{q.After.Meter, q.After.Hour, q.After.Instance, q.After.Reported}
			}
		}
		for {
			args := append([]any{sub, clock.Micros(q.Start), clock.Micros(q.End)}, pos...)
			args = append(args, chunk)
			rows, err := s.db.QueryContext(ctx, `SELECT meter_key, instance, usage_hour_us, reported_hour_us, quantity, resource_uri, location, tags, additional_info
				FROM usage_records WHERE subscription_id = ? AND reported_hour_us >= ? AND reported_hour_us < ?
				AND (`+orderBy+`) > (?, ?, ?, ?) ORDER BY `+orderBy+` LIMIT ?`, args...)
			if err != nil {
				return nil, nil, err
			}
			n := 0
			for rows.Next() {
				n++
				r := row{sub: sub}
				if err := rows.Scan(&r.meter, &r.instance, &r.hour, &r.reported, &r.qty, &r.resourceURI, &r.location, &r.tags, &r.addl); err != nil {
					rows.Close()
					return nil, nil, err
				}
				inst := r.instance
				if !q.ShowDetails {
					inst = ""
				}
				b := bucket(r.hour)
				key := groupKey{r.meter, inst, b.Unix()}
				if cur != nil && key != curKey {
					emit()
					if len(out) == q.Limit {
						rows.Close()
						next := &Cursor{Sub: last.sub, Meter: last.meter, Instance: last.instance, Hour: last.hour, Reported: last.reported}
						return out, next, nil
					}
				}
				if cur == nil {
					m, _ := s.meters.Lookup(ctx, r.meter)
					if m.ID == "" {
						m = meter.Meter{ID: r.meter, Name: r.meter}
					}
					cur = &Aggregate{SubscriptionID: sub, Meter: m, Start: b, End: b.Add(width), Quantity: money.Zero, Instance: inst}
					curKey = key
				}
				cur.Quantity = cur.Quantity.Add(r.qty)
				if q.ShowDetails {
					cur.ResourceURI, cur.Location = r.resourceURI, r.location
					cur.Tags, cur.AdditionalInfo = json.RawMessage(r.tags), json.RawMessage(r.addl)
				}
				last = r
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, nil, err
			}
			if n < chunk {
				break
			}
			pos = []any{last.meter, last.instance, last.hour, last.reported}
			if !q.ShowDetails {
				pos = []any{last.meter, last.hour, last.instance, last.reported}
			}
		}
		emit()
		if len(out) >= q.Limit && si+1 < len(q.Subscriptions) {
			// The page is full at a subscription boundary.
			return out, &Cursor{Sub: q.Subscriptions[si+1], Hour: -1 << 62, Reported: -1 << 62}, nil
		}
	}
	return out, nil, nil
}
