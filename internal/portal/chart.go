package portal

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/stackbill/stackbill/internal/clock"

	"github.com/stackbill/stackbill/internal/money"
)

// point is one value of one series key in one time bucket.
type point struct {
	Bucket time.Time
	Key    string
	Qty    money.Quantity
}

// chart is a time series chart and the table that stands in for it without
// JavaScript: the top keys by total get their own line, the rest are summed
// into "other" so a chart stays readable with hundreds of subscriptions.
type chart struct {
	ID     string
	Title  string
	Unit   string
	Kind   string // line or bar
	Labels []string
	Series []series
	// JSON is the chart's data for the script (a data attribute, so no
	// inline script is needed), with exact decimals as JSON numbers: the
	// browser plots them and computes nothing from them.
	JSON string
	// Compare, on a compare chart, sums this month against last.
	Compare *comparison
}

type series struct {
	Key, Label string
	Values     []money.Quantity
	Total      money.Quantity
}

const maxSeries = 8

// buildChart lays points out over buckets from..to of width step. Buckets
// that begin after now have no data yet: they are gaps, not zeros, so a
// line does not seem to fall off a cliff at the current hour.
func buildChart(id, title, unit, kind string, pts []point, from, to, now time.Time, step time.Duration, label func(string) string) chart {
	c := chart{ID: id, Title: title, Unit: unit, Kind: kind}
	idx := map[int64]int{}
	known := 0 // buckets that have begun
	for t := from; t.Before(to); t = t.Add(step) {
		if !t.After(now) {
			known++
		}
		idx[t.Unix()] = len(c.Labels)
		if step >= 24*time.Hour {
			c.Labels = append(c.Labels, t.Format("2006-01-02"))
		} else {
			c.Labels = append(c.Labels, t.Format("01-02 15:04"))
		}
	}
	byKey := map[string]*series{}
	for _, p := range pts {
		i, ok := idx[p.Bucket.Unix()]
		if !ok {
			continue
		}
		s := byKey[p.Key]
		if s == nil {
			s = &series{Key: p.Key, Label: label(p.Key), Values: zeros(len(c.Labels)), Total: money.Zero}
			byKey[p.Key] = s
		}
		s.Values[i] = s.Values[i].Add(p.Qty)
		s.Total = s.Total.Add(p.Qty)
	}
	all := make([]*series, 0, len(byKey))
	for _, s := range byKey {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool {
		if c := all[i].Total.Cmp(all[j].Total); c != 0 {
			return c > 0
		}
		return all[i].Label < all[j].Label
	})
	for i, s := range all {
		if i < maxSeries {
			c.Series = append(c.Series, *s)
			continue
		}
		if i == maxSeries {
			c.Series = append(c.Series, series{Key: "", Label: "other", Values: zeros(len(c.Labels)), Total: money.Zero})
		}
		o := &c.Series[maxSeries]
		for k, v := range s.Values {
			o.Values[k] = o.Values[k].Add(v)
		}
		o.Total = o.Total.Add(s.Total)
	}
	c.encode(kind == "bar", func(int) int { return known })
	return c
}

// encode writes c's data for the script. Series i has values for its first
// known(i) buckets; the rest are gaps (JSON null), not zeros.
func (c *chart) encode(stacked bool, known func(i int) int) {
	type ds struct {
		Label string            `json:"label"`
		Data  []json.RawMessage `json:"data"`
	}
	out := struct {
		Kind     string   `json:"kind"`
		Unit     string   `json:"unit"`
		Stacked  bool     `json:"stacked"`
		Labels   []string `json:"labels"`
		Datasets []ds     `json:"datasets"`
	}{Kind: c.Kind, Unit: c.Unit, Stacked: stacked, Labels: c.Labels, Datasets: []ds{}}
	for si, s := range c.Series {
		d := ds{Label: s.Label}
		n := known(si)
		for i, v := range s.Values {
			if i >= n {
				d.Data = append(d.Data, json.RawMessage("null"))
				continue
			}
			d.Data = append(d.Data, json.RawMessage(v.String()))
		}
		out.Datasets = append(out.Datasets, d)
	}
	b, _ := json.Marshal(out)
	c.JSON = string(b)
}

// compareChart sets a month's daily quantities beside the month before's,
// day of month against day of month, so that "are we above last month?" is
// one look. The month's days that have not begun are gaps; last month's
// bars run to its end.
func compareChart(id, title, unit string, pts []point, now time.Time) chart {
	start := clock.MonthStart(now)
	lastStart := clock.MonthStart(start.Add(-time.Hour))
	days := func(from time.Time) int { return int(clock.NextMonth(from).Sub(from) / (24 * time.Hour)) }
	n := max(days(start), days(lastStart))
	c := chart{ID: id, Title: title, Unit: unit, Kind: "bar"}
	for d := 1; d <= n; d++ {
		c.Labels = append(c.Labels, "Day "+strconv.Itoa(d))
	}
	cur := series{Key: "this", Label: start.Format("January 2006"), Values: zeros(n), Total: money.Zero}
	prev := series{Key: "last", Label: lastStart.Format("January 2006"), Values: zeros(n), Total: money.Zero}
	for _, p := range pts {
		s := &cur
		if p.Bucket.Before(start) {
			s = &prev
		}
		if p.Bucket.Before(lastStart) || !p.Bucket.Before(clock.NextMonth(start)) {
			continue
		}
		i := p.Bucket.Day() - 1
		s.Values[i] = s.Values[i].Add(p.Qty)
		s.Total = s.Total.Add(p.Qty)
	}
	// Last month up to the same day, so the totals compare like with like.
	same := money.Zero
	for i := 0; i < now.Day() && i < n; i++ {
		same = same.Add(prev.Values[i])
	}
	c.Series = []series{cur, prev}
	c.Compare = &comparison{ThisMonth: cur.Label, LastMonth: prev.Label, SoFar: cur.Total, LastSameDays: same, LastTotal: prev.Total, Day: now.Day()}
	if !same.IsZero() {
		pct := cur.Total.Sub(same).Mul(money.FromInt(100)).Div(same, 0)
		c.Compare.Change, c.Compare.Rising = pct.String()+" %", pct.Sign() > 0
		if c.Compare.Rising {
			c.Compare.Change = "+" + c.Compare.Change
		}
	}
	lastDays := days(lastStart)
	c.encode(false, func(i int) int {
		if i == 0 {
			return now.Day()
		}
		return lastDays
	})
	return c
}

// comparison is a compare chart's totals: the month so far against the
// same days of the month before.
type comparison struct {
	ThisMonth, LastMonth           string
	SoFar, LastSameDays, LastTotal money.Quantity
	Day                            int
	Change                         string // "" when last month had none in those days
	Rising                         bool
}

func zeros(n int) []money.Quantity {
	z := make([]money.Quantity, n)
	for i := range z {
		z[i] = money.Zero
	}
	return z
}
