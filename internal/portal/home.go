package portal

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/usage"
)

// localTrend is a stack's local usage this month against last, for subs
// (nil: every subscription on the stack): the compare chart of the meter
// CSPs are billed on most, and every meter's month so far beside the same
// days of last month.
type localTrend struct {
	Chart  *chart
	Key    string // the chart's meter
	Meters []meterMonth
}

// meterMonth is one meter's month so far against the same days of the
// month before, in the meter's own unit.
type meterMonth struct {
	Name, Unit, Change string
	Rising, HasChange  bool
	SoFar, Last        money.Quantity
	Href               string
}

func (p *Portal) localTrend(ctx context.Context, subs []string, now time.Time, explorer string) (localTrend, error) {
	var lt localTrend
	start := clock.MonthStart(now)
	lastStart := clock.MonthStart(start.Add(-time.Hour))
	// The same days of last month: up to the same instant of the month.
	sameEnd := lastStart.Add(now.Sub(start))
	if sameEnd.After(start) {
		sameEnd = start
	}
	pts, err := p.d.Usage.Series(ctx, usage.SeriesQuery{Subscriptions: subs, From: lastStart, To: clock.NextMonth(now), Granularity: usage.Daily, By: usage.ByMeter})
	if err != nil {
		return lt, err
	}
	names := p.localMeters(ctx)
	byMeter := map[string]*meterMonth{}
	var choices []meterChoice
	for _, pt := range pts {
		m := byMeter[pt.Key]
		if m == nil {
			mm := names[pt.Key]
			if mm.Name == "" {
				mm.Name = pt.Key
			}
			m = &meterMonth{Name: mm.Name, Unit: mm.Unit, SoFar: money.Zero, Last: money.Zero,
				Href: explorer + "meter=" + url.QueryEscape(pt.Key) + "&from=" + start.Format("2006-01-02")}
			byMeter[pt.Key] = m
			choices = append(choices, meterChoice{Key: pt.Key, Name: mm.Name, Unit: mm.Unit})
		}
		switch {
		case !pt.Bucket.Before(start):
			m.SoFar = m.SoFar.Add(pt.Quantity)
		case pt.Bucket.Before(sameEnd):
			// A day of last month counts whole once the same day of this
			// month has begun, as the chart's bars do.
			m.Last = m.Last.Add(pt.Quantity)
		}
	}
	for _, m := range byMeter {
		if !m.Last.IsZero() {
			pct := m.SoFar.Sub(m.Last).Mul(money.FromInt(100)).Div(m.Last, 0)
			m.Change, m.HasChange, m.Rising = pct.String()+" %", true, pct.Sign() > 0
			if m.Rising {
				m.Change = "+" + m.Change
			}
		}
		if !m.SoFar.IsZero() || !m.Last.IsZero() {
			lt.Meters = append(lt.Meters, *m)
		}
	}
	sort.Slice(lt.Meters, func(i, j int) bool { return lt.Meters[i].Name < lt.Meters[j].Name })
	all := make([]point, len(pts))
	for i, pt := range pts {
		all[i] = point{Bucket: pt.Bucket, Key: pt.Key, Qty: pt.Quantity}
	}
	lt.Chart, lt.Key = trendOf(choices, all, now)
	return lt, nil
}

// trendOf charts the meter a chart opens on among choices (defaultMeter),
// day by day this month against last, from pts keyed by meter; nil when
// there is no meter.
func trendOf(choices []meterChoice, pts []point, now time.Time) (*chart, string) {
	sel := defaultMeter(choices)
	if sel == "" {
		return nil, ""
	}
	var m meterChoice
	for _, c := range choices {
		if c.Key == sel {
			m = c
		}
	}
	var sp []point
	for _, pt := range pts {
		if pt.Key == sel {
			sp = append(sp, pt)
		}
	}
	c := compareChart("trend", m.Name+" per day, this month against last", m.Unit, sp, now)
	return &c, sel
}

// stackHome is the stack operator's first page: who runs on the stamp,
// whether usage is reaching commerce, and how this month compares.
func (p *Portal) stackHome(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	pr := stackPrincipal(s.P)
	now := p.now(ctx)
	dirs, subs, err := p.stackDirectory(ctx, pr)
	if err != nil {
		return err
	}
	states := map[string]int{}
	for _, x := range subs {
		states[x.State]++
	}
	type stateCount struct {
		State string
		N     int
	}
	var byState []stateCount
	for st, n := range states {
		byState = append(byState, stateCount{st, n})
	}
	sort.Slice(byState, func(i, j int) bool { return byState[i].State < byState[j].State })
	st, err := p.d.Forwarder.Status(ctx)
	if err != nil {
		return err
	}
	var attention []attentionItem
	switch {
	case !st.Activated:
		attention = append(attention, attentionItem{Text: "The stack is not activated: its usage reaches no one. Activate it with the key from its registration (stackbill stack activate).", Href: "/portal/stack/bridge", Action: "Bridge"})
	case !st.UsageReporting:
		attention = append(attention, attentionItem{Text: "Usage reporting is off for registration " + st.Registration + ": usage is kept here and not forwarded.", Href: "/portal/stack/bridge", Action: "Bridge"})
	}
	if st.Activated && st.UsageReporting && time.Duration(st.LagSeconds)*time.Second > quietAfter {
		attention = append(attention, attentionItem{Text: fmt.Sprintf("Forwarding lags by %s (%d records waiting).", (time.Duration(st.LagSeconds) * time.Second).Round(time.Minute), st.Backlog), Href: "/portal/stack/bridge", Action: "Bridge"})
	}
	if st.LastError != "" && st.LastErrorAt != nil && (st.LastSuccess == nil || st.LastErrorAt.After(*st.LastSuccess)) {
		attention = append(attention, attentionItem{Text: "The last attempt to forward failed: " + st.LastError, Href: "/portal/stack/bridge", Action: "Bridge"})
	}
	held, err := p.quarantineAttention(ctx, s.P, nil)
	if err != nil {
		return err
	}
	attention = append(attention, held...)
	trend, err := p.localTrend(ctx, nil, now, "/portal/stack/usage?")
	if err != nil {
		return err
	}
	// The subscriptions that used the chart's meter most this month.
	names := map[string]string{}
	for _, x := range subs {
		names[strings.ToLower(x.SubscriptionID)] = x.DisplayName
	}
	var top []usageRow
	if key := trend.Key; key != "" {
		pts, err := p.d.Usage.Series(ctx, usage.SeriesQuery{MeterKey: key, From: clock.MonthStart(now), To: clock.NextMonth(now), Granularity: usage.Daily, By: usage.BySubscription})
		if err != nil {
			return err
		}
		sums := map[string]money.Quantity{}
		for _, pt := range pts {
			if q, ok := sums[pt.Key]; ok {
				sums[pt.Key] = q.Add(pt.Quantity)
			} else {
				sums[pt.Key] = pt.Quantity
			}
		}
		for sub, q := range sums {
			name := names[sub]
			if name == "" {
				name = sub
			}
			top = append(top, usageRow{Name: name, Href: "/portal/stack/usage?subscription=" + url.QueryEscape(sub) + "&from=" + clock.MonthStart(now).Format("2006-01-02"), Qty: q})
		}
		sort.Slice(top, func(i, j int) bool {
			if c := top[i].Qty.Cmp(top[j].Qty); c != 0 {
				return c > 0
			}
			return top[i].Name < top[j].Name
		})
		if len(top) > 5 {
			top = top[:5]
		}
	}
	p.render(w, r, s, "stackhome", "Stack overview", map[string]any{"Dirs": len(dirs), "Subs": len(subs), "ByState": byState, "Status": st,
		"Attention": attention, "Trend": trend, "Top": top, "Period": clock.Period(now)})
	return nil
}

// myHome is a tenant's first page: its own usage this month against last,
// in quantities (tenants see no CSP prices).
func (p *Portal) myHome(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	now := p.now(ctx)
	trend, err := p.localTrend(ctx, []string{tenantSub(s)}, now, "/portal/my/usage?")
	if err != nil {
		return err
	}
	p.render(w, r, s, "myhome", "My subscription", map[string]any{"Sub": s.P.SubscriptionID, "Trend": trend, "Period": clock.Period(now)})
	return nil
}
