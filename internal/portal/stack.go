package portal

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/csvexport"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

func asARM(err error, target **arm.Error) bool { return errors.As(err, target) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// stackPrincipal is the principal stack services see: the commerce operator
// acts as the stack operator in a process that runs both, as on the API.
func stackPrincipal(pr auth.Principal) auth.Principal {
	if pr.Role == auth.RoleOperator {
		pr.Role = auth.RoleStackOperator
	}
	return pr
}

// localMeters is the stack's meter catalogue by meter key; a page without
// it still renders, naming meters by their IDs.
func (p *Portal) localMeters(ctx context.Context) map[string]meter.Meter {
	out := map[string]meter.Meter{}
	if ms, err := p.d.Meters.List(ctx); err == nil {
		for _, m := range ms {
			k, _ := meter.Normalize(m.ID)
			out[k] = m
		}
	}
	return out
}

// stackDirectory is the stack's onboarded directory tenants and its user
// subscriptions, as pr may see them.
func (p *Portal) stackDirectory(ctx context.Context, pr auth.Principal) ([]tenancy.DirectoryTenant, []tenancy.Subscription, error) {
	dirs, err := p.d.Tenancy.ListDirectoryTenants(ctx, pr, p.d.Tenancy.Provider())
	if err != nil {
		return nil, nil, err
	}
	subs, err := p.d.Tenancy.ListSubscriptions(ctx, pr, p.d.Tenancy.Provider())
	return dirs, subs, err
}

type tenantSubRow struct {
	tenancy.Subscription
	DirectoryName string
}

func (p *Portal) stackTenants(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	dirs, subs, err := p.stackDirectory(ctx, stackPrincipal(s.P))
	if err != nil {
		return err
	}
	dirName := map[string]string{}
	for _, d := range dirs {
		dirName[strings.ToLower(d.TenantID)] = d.Name
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	state := r.URL.Query().Get("state")
	var rows []tenantSubRow
	for _, x := range subs {
		row := tenantSubRow{Subscription: x, DirectoryName: dirName[strings.ToLower(x.TenantID)]}
		if (state == "" || strings.EqualFold(state, x.State)) && matches(q, x.SubscriptionID, x.DisplayName, x.Owner, x.TenantID, row.DirectoryName, x.OfferID) {
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		return strings.ToLower(rows[i].DisplayName) < strings.ToLower(rows[j].DisplayName)
	})
	pageRows, pg := paginate(r, rows)
	p.render(w, r, s, "stacktenants", "Tenants and subscriptions", map[string]any{"Dirs": dirs, "Rows": pageRows, "Pager": pg, "Q": q, "State": state,
		"Provider": p.d.Tenancy.Provider()})
	return nil
}

func (p *Portal) stackMeters(w http.ResponseWriter, r *http.Request, s *session) error {
	ms, err := p.d.Meters.List(r.Context())
	if err != nil {
		return err
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var rows []meter.Meter
	for _, m := range ms {
		if matches(q, m.ID, m.Name, m.Unit, m.Category) {
			rows = append(rows, m)
		}
	}
	pageRows, pg := paginate(r, rows)
	p.render(w, r, s, "meters", "Meters", map[string]any{"Rows": pageRows, "Pager": pg, "Q": q})
	return nil
}

// explorer is the state of a usage explorer page.
type explorer struct {
	Range       dateRange
	Granularity string
	By          string
	Meter       string
	Sub         string
	Meters      []meter.Meter
	Subs        []tenancy.Subscription
	Chart       chart
	CSV         string
}

// explore reads the explorer's parameters and charts usage of subs (nil:
// every subscription on the stack) for one meter; subNames names the
// subscriptions in the legend as the page's picker does.
func (p *Portal) explore(r *http.Request, subs []string, subNames map[string]string, allowBy bool) (explorer, error) {
	ctx := r.Context()
	q := r.URL.Query()
	e := explorer{Granularity: "Daily", By: "subscription"}
	if g := q.Get("granularity"); strings.EqualFold(g, "hourly") {
		e.Granularity = "Hourly"
	}
	days := 30
	if e.Granularity == "Hourly" {
		days = 2
	}
	rg, err := parseRange(r, p.now(ctx), days)
	if err != nil {
		return e, err
	}
	if e.Granularity == "Hourly" && rg.To.Sub(rg.From) > 14*24*time.Hour {
		return e, arm.InvalidRequest("to", "Hourly charts cover at most 14 days; choose Daily for longer ranges.")
	}
	e.Range = rg
	if allowBy {
		switch b := q.Get("by"); b {
		case "meter", "resource", "subscription":
			e.By = b
		case "":
		default:
			return e, arm.InvalidRequest("by", "Break usage down by subscription, meter or resource, not '%s'.", b)
		}
	} else {
		e.By = "resource"
	}
	names := p.localMeters(ctx)
	// Offer the meters that have usage in range; by meter, no meter filter.
	perMeter, err := p.d.Usage.Series(ctx, usage.SeriesQuery{Subscriptions: subs, From: rg.From, To: rg.To, Granularity: usage.Daily, By: usage.ByMeter})
	if err != nil {
		return e, err
	}
	seen := map[string]bool{}
	for _, pt := range perMeter {
		if !seen[pt.Key] {
			seen[pt.Key] = true
			m := names[pt.Key]
			if m.ID == "" {
				m = meter.Meter{ID: pt.Key, Name: pt.Key}
			}
			e.Meters = append(e.Meters, m)
		}
	}
	sort.Slice(e.Meters, func(i, j int) bool { return e.Meters[i].Name < e.Meters[j].Name })
	if m := q.Get("meter"); m != "" {
		k, ok := meter.Normalize(m)
		if !ok {
			return e, arm.InvalidRequest("meter", "'%s' is not a meter ID.", m)
		}
		e.Meter = k
	}
	if e.By == "meter" {
		e.Meter = ""
	} else if e.Meter == "" {
		var cs []meterChoice
		for _, m := range e.Meters {
			k, _ := meter.Normalize(m.ID)
			cs = append(cs, meterChoice{Key: k, Name: m.Name, Unit: m.Unit})
		}
		e.Meter = defaultMeter(cs)
	}
	gran, step := usage.Daily, 24*time.Hour
	if e.Granularity == "Hourly" {
		gran, step = usage.Hourly, time.Hour
	}
	pts, err := p.d.Usage.Series(ctx, usage.SeriesQuery{Subscriptions: subs, MeterKey: e.Meter, From: rg.From, To: rg.To, Granularity: gran, By: usage.Dimension(e.By)})
	if err != nil {
		return e, err
	}
	cp := make([]point, len(pts))
	for i, x := range pts {
		cp[i] = point{Bucket: x.Bucket, Key: x.Key, Qty: x.Quantity}
	}
	label := func(k string) string {
		if n := subNames[k]; n != "" {
			return n + " (" + k[:min(8, len(k))] + "…)"
		}
		return k
	}
	title, unit := "Usage by meter", ""
	if e.By == "meter" {
		label = func(k string) string {
			if m, ok := names[k]; ok {
				return m.Name + " (" + m.Unit + ")"
			}
			return k
		}
		title = "Usage by meter (each in its own unit)"
	} else if m, ok := names[e.Meter]; ok {
		title, unit = m.Name+" by "+e.By, m.Unit
	}
	if e.By == "resource" {
		label = resourceLabels(cp)
	}
	// One meter's quantities stack (bars); several meters' units do not.
	kind := "bar"
	if e.By == "meter" {
		kind = "line"
	}
	e.Chart = buildChart("explorer", title, unit, kind, cp, clockBucket(rg.From, step), rg.To, p.now(ctx), step, label)
	return e, nil
}

func clockBucket(t time.Time, step time.Duration) time.Time {
	if step >= 24*time.Hour {
		return clock.DayStart(t)
	}
	return clock.HourStart(t)
}

func (p *Portal) stackUsage(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	var subs []string
	all, err := p.d.Tenancy.ListSubscriptions(ctx, stackPrincipal(s.P), p.d.Tenancy.Provider())
	if err != nil {
		return err
	}
	sub := r.URL.Query().Get("subscription")
	if sub != "" {
		id, ok := arm.CanonicalGUID(sub)
		if !ok {
			return arm.InvalidRequest("subscription", "'%s' is not a subscription ID.", sub)
		}
		subs = []string{strings.ToLower(id)}
	}
	names := map[string]string{}
	for _, x := range all {
		names[strings.ToLower(x.SubscriptionID)] = x.DisplayName
	}
	e, err := p.explore(r, subs, names, true)
	if err != nil {
		return err
	}
	e.Sub, e.Subs = sub, all
	p.render(w, r, s, "explorer", "Usage explorer", e)
	return nil
}

func (p *Portal) stackBridge(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	st, err := p.d.Forwarder.Status(ctx)
	if err != nil {
		return err
	}
	now := p.now(ctx)
	since := clock.HourStart(now).Add(-47 * time.Hour)
	hours, err := p.d.Forwarder.ForwardedPerHour(ctx, since)
	if err != nil {
		return err
	}
	var pts []point
	for _, h := range hours {
		pts = append(pts, point{Bucket: h.Hour, Key: "forwarded", Qty: money.FromInt(h.Records)})
	}
	c := buildChart("forwarded", "Records forwarded per hour (last 48 hours)", "records", "bar", pts, since, clock.HourStart(now).Add(time.Hour), now, time.Hour,
		func(string) string { return "records forwarded" })
	p.render(w, r, s, "bridge", "Bridge", map[string]any{"Status": st, "Chart": c})
	return nil
}

// tenantSub is the one subscription a tenant token may read.
func tenantSub(s *session) string { return strings.ToLower(s.P.SubscriptionID) }

func (p *Portal) myUsage(w http.ResponseWriter, r *http.Request, s *session) error {
	e, err := p.explore(r, []string{tenantSub(s)}, nil, false)
	if err != nil {
		return err
	}
	e.Sub = s.P.SubscriptionID
	q := r.URL.Query()
	q.Del("page")
	e.CSV = "/portal/my/usage.csv?" + q.Encode()
	p.render(w, r, s, "myusage", "My usage", e)
	return nil
}

// myUsageCSV downloads the tenant's usage records in range, per resource
// instance, as the tenant API would aggregate them.
func (p *Portal) myUsageCSV(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	gran := usage.Daily
	if strings.EqualFold(r.URL.Query().Get("granularity"), "hourly") {
		gran = usage.Hourly
	}
	rg, err := parseRange(r, p.now(ctx), 30)
	if err != nil {
		return err
	}
	pts, err := p.d.Usage.Series(ctx, usage.SeriesQuery{Subscriptions: []string{tenantSub(s)}, From: rg.From, To: rg.To, Granularity: gran, By: usage.ByMeter})
	if err != nil {
		return err
	}
	names := p.localMeters(ctx)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage-`+tenantSub(s)+`-`+rg.FromText()+`-`+rg.ToText()+`.csv"`)
	cw := csvexport.NewWriter(w)
	_ = cw.Write([]string{"subscriptionId", "usageStartTime", "granularity", "meterId", "meterName", "unit", "quantity"})
	for _, pt := range pts {
		m := names[pt.Key]
		_ = cw.Write([]string{tenantSub(s), pt.Bucket.Format(time.RFC3339), string(gran), m.ID, m.Name, m.Unit, pt.Quantity.String()})
	}
	cw.Flush()
	return cw.Error()
}

// meterChoice is a meter a chart could open on.
type meterChoice struct{ Key, Name, Unit string }

// defaultMeter is the meter a usage chart opens on: vCPU-hours of base VMs,
// the meter CSPs are billed on most (every VM series has its vCPU-hours
// there), else another VM's vCPU-hours, else the first by name; "" when
// there is none.
func defaultMeter(ms []meterChoice) string {
	rank := func(m meterChoice) int {
		n, u := strings.ToLower(m.Name), strings.ToLower(m.Unit)
		switch {
		case strings.Contains(n, "base vm"):
			return 2
		case strings.Contains(n, "vcpu") || (strings.Contains(u, "core hour") && strings.Contains(n, "vm")):
			return 1
		}
		return 0
	}
	best := -1
	for i, m := range ms {
		if best < 0 {
			best = i
			continue
		}
		b := ms[best]
		if r, rb := rank(m), rank(b); r > rb || (r == rb && (m.Name < b.Name || (m.Name == b.Name && m.Key < b.Key))) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return ms[best].Key
}

// resourceLabels names each resource of a chart by its shortest unambiguous
// suffix: its type and name ("Microsoft.Compute/virtualMachines/vm0")
// when that is unique among the chart's resources, else with its resource
// group, else with its subscription too.
func resourceLabels(pts []point) func(string) string {
	keys := map[string]bool{}
	for _, pt := range pts {
		keys[pt.Key] = true
	}
	// levels: provider suffix, resource group + suffix, the whole URI.
	level := func(k string, n int) string {
		if k == "" {
			return "(no resource)"
		}
		i := strings.LastIndex(k, "/providers/")
		if i < 0 || n == 2 {
			return k
		}
		suffix := k[i+len("/providers/"):]
		if n == 0 {
			return suffix
		}
		if j := strings.Index(strings.ToLower(k), "/resourcegroups/"); j >= 0 && j < i {
			return k[j+len("/resourceGroups/"):i] + "/" + suffix
		}
		return k
	}
	labels := map[string]string{}
	for n := 0; n < 3 && len(labels) < len(keys); n++ {
		count := map[string]int{}
		for k := range keys {
			if _, done := labels[k]; !done {
				count[level(k, n)]++
			}
		}
		for k := range keys {
			if _, done := labels[k]; !done && (count[level(k, n)] == 1 || n == 2) {
				labels[k] = level(k, n)
			}
		}
	}
	return func(k string) string {
		if l, ok := labels[k]; ok {
			return l
		}
		return level(k, 2)
	}
}
