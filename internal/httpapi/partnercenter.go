package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/partnercenter"
)

// Partner Center's billing API, under /partnercenter/v1: what a CSP's
// billing tools read from Partner Center, over stackbill's invoices and
// price list (package partnercenter shapes them).

// pcPage reads Partner Center's size and offset.
func pcPage(r *http.Request, def int) (size, offset int, err error) {
	q := r.URL.Query()
	size, offset = def, 0
	if v := q.Get("size"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 1 || size > 2000 {
			return 0, 0, arm.InvalidRequest("size", "size '%s' is not a page size between 1 and 2000.", v)
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, arm.InvalidRequest("offset", "offset '%s' is not a non-negative number.", v)
		}
	}
	return size, offset, nil
}

func (s *Server) pcInvoices(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	size, offset, err := pcPage(r, 200)
	if err != nil {
		return err
	}
	invs, err := s.deps.Billing.FinalInvoices(r.Context(), p)
	if err != nil {
		return err
	}
	items := make([]partnercenter.Invoice, len(invs))
	for i, inv := range invs {
		items[i] = partnercenter.FromInvoice(inv)
	}
	WriteJSON(w, http.StatusOK, partnercenter.Page(items, "/invoices", size, offset))
	return nil
}

// pcInvoice loads a finalized invoice: a draft is unbilled usage in
// Partner Center's terms, not an invoice.
func (s *Server) pcFinal(r *http.Request, p auth.Principal, id string) (billing.Invoice, error) {
	inv, err := s.deps.Billing.Invoice(r.Context(), p, id)
	if err != nil {
		return billing.Invoice{}, err
	}
	if inv.FinalizedAt == nil {
		return billing.Invoice{}, arm.Errorf(arm.NotFound, "InvoiceNotFound", "Invoice '%s' is a draft until its period is finalized; its usage is unbilled until then.", id)
	}
	return inv, nil
}

func (s *Server) pcInvoice(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	inv, err := s.pcFinal(r, p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, partnercenter.FromInvoice(inv))
	return nil
}

// pcLineItems serves an invoice's line items, in the path form
// (/invoices/{id}/lineitems/{provider}/{type}) and the query form
// (?provider=&invoicelineitemtype=).
func (s *Server) pcLineItems(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	provider, kind := params["provider"], params["type"]
	if provider == "" {
		provider, kind = arm.QueryParam(r.URL.Query(), "provider"), arm.QueryParam(r.URL.Query(), "invoicelineitemtype")
	}
	if params["provider"] == "" && strings.EqualFold(provider, "onetime") && strings.EqualFold(kind, "usagelineitems") {
		return s.pcDailyRatedUsage(w, r, p, params["id"])
	}
	if !strings.EqualFold(provider, "azure") {
		return arm.InvalidRequest("provider", "Billing provider '%s' has no line items here: Azure Stack Hub usage is billed under provider Azure (BillingLineItems), and its daily rated usage is provider onetime (usagelineitems).", provider)
	}
	usage := strings.EqualFold(kind, "UsageLineItems")
	if !usage && !strings.EqualFold(kind, "BillingLineItems") {
		return arm.InvalidRequest("invoicelineitemtype", "Invoice line item type '%s' is not one of BillingLineItems and UsageLineItems.", kind)
	}
	size, offset, err := pcPage(r, 1000)
	if err != nil {
		return err
	}
	id := params["id"]
	inv, err := s.pcFinal(r, p, id)
	if err != nil {
		return err
	}
	if usage {
		// The invoice's usage day by day: its reconciliation file summed per
		// subscription, meter and day.
		var d partnercenter.DailyUsage
		if err := s.deps.Billing.ReconciliationRows(r.Context(), p, inv.PartnerID, inv.Period, d.Add); err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, partnercenter.Page(d.Items, "/invoices/"+id+"/lineitems/Azure/UsageLineItems", size, offset))
		return nil
	}
	WriteJSON(w, http.StatusOK, partnercenter.Page(partnercenter.BillingLineItems(inv), "/invoices/"+id+"/lineitems/Azure/BillingLineItems", size, offset))
	return nil
}

var pcRegion = regexp.MustCompile(`^[A-Za-z]{2}$`)

func (s *Server) pcRateCard(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	q := r.URL.Query()
	if v := q.Get("region"); v != "" && !pcRegion.MatchString(v) {
		return arm.InvalidRequest("region", "region '%s' is not a two-letter country code such as US.", v)
	}
	locale := r.Header.Get("X-Locale")
	if locale == "" {
		locale = "en-US"
	}
	if len(locale) > 35 {
		return arm.InvalidRequest("X-Locale", "X-Locale is not a culture such as en-US.")
	}
	rc, err := s.deps.Billing.PartnerRateCard(r.Context(), p, strings.ToUpper(q.Get("currency")), locale)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, partnercenter.FromRateCard(rc))
	return nil
}

// pcSeekToken is a daily rated usage continuation: where the next page
// starts in which file. It carries no authority: each page checks the
// caller's access to the file again.
type pcSeekToken struct {
	Offset int    `json:"o"`
	File   string `json:"f"`
}

// pageRows collects rows [offset, offset+n] of a streamed file (one more
// than a page, to tell whether there are more), stopping the file there.
func pageRows(offset, n int, stream func(fn func(header, row []string) error) error) (header []string, rows [][]string, err error) {
	i := 0
	err = stream(func(h, rec []string) error {
		header = h
		if i >= offset {
			rows = append(rows, rec)
			if len(rows) > n {
				return billing.ErrStopRows
			}
		}
		i++
		return nil
	})
	return header, rows, err
}

// pcDailyRatedUsage serves daily rated usage (provider=onetime,
// invoicelineitemtype=usagelineitems): billed for a finalized invoice's
// number, unbilled for "unbilled" with period=current or previous; pages
// follow with seekOperation=Next and the MS-ContinuationToken header.
func (s *Server) pcDailyRatedUsage(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) error {
	ctx := r.Context()
	q := r.URL.Query()
	var partner, period, currency string
	stream := func(fn func(header, row []string) error) error {
		return s.deps.Billing.ReconciliationRows(ctx, p, partner, period, fn)
	}
	self := "/invoices/" + id + "/lineitems?provider=onetime&invoicelineitemtype=usagelineitems"
	if strings.EqualFold(id, "unbilled") {
		now := s.deps.Clock.Now()
		switch which := strings.ToLower(arm.QueryParam(q, "period")); which {
		case "current":
			period = clock.Period(now)
		case "previous":
			period = clock.Period(clock.MonthStart(now).Add(-time.Hour))
		default:
			return arm.InvalidRequest("period", "Unbilled daily rated usage needs period=current or period=previous.")
		}
		self += "&period=" + strings.ToLower(arm.QueryParam(q, "period"))
		partner = p.PartnerID
		switch p.Role {
		case auth.RoleReseller:
			// A reseller's own customers, at what its provider charges it.
			stream = func(fn func(header, row []string) error) error {
				return s.deps.Billing.ResellerDailyUsage(ctx, p, period, fn)
			}
			return s.pcServeRows(w, r, p.PartnerID+"/"+period, self, stream)
		case auth.RoleOperator:
			if partner = q.Get("partner"); partner == "" {
				return arm.InvalidRequest("partner", "The operator names the partner whose unbilled usage to read: ?partner=.")
			}
		}
		inv, err := s.deps.Billing.Invoice(ctx, p, "SB-"+strings.ReplaceAll(period, "-", "")+"-"+partner)
		if arm.Is(err, arm.NotFound) {
			// No usage in the period yet: nothing unbilled.
			WriteJSON(w, http.StatusOK, partnercenter.SeekPage([]partnercenter.DailyRatedUsageLineItem{}, self, "", ""))
			return nil
		}
		if err != nil {
			return err
		}
		if inv.FinalizedAt != nil {
			return arm.InvalidRequest("period", "Period %s is finalized: its usage is billed on invoice %s.", period, inv.Number)
		}
		currency = inv.Currency
	} else {
		inv, err := s.pcFinal(r, p, id)
		if err != nil {
			return err
		}
		partner, period, currency = inv.PartnerID, inv.Period, inv.Currency
	}
	if c := arm.QueryParam(q, "currencycode"); c != "" && !strings.EqualFold(c, currency) {
		return arm.InvalidRequest("currencycode", "This usage is billed in %s, not %s.", currency, strings.ToUpper(c))
	}
	return s.pcServeRows(w, r, partner+"/"+period, self+"&currencycode="+strings.ToLower(currency), stream)
}

// pcServeRows serves a page of a streamed reconciliation file's rows as
// daily rated usage line items, seeking with Partner Center's continuation
// token (which names the file, so it cannot be replayed on another).
func (s *Server) pcServeRows(w http.ResponseWriter, r *http.Request, file, self string, stream func(fn func(header, row []string) error) error) error {
	q := r.URL.Query()
	size := 2000
	if v := arm.QueryParam(q, "size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 2000 {
			return arm.InvalidRequest("size", "size '%s' is not a page size between 1 and 2000.", v)
		}
		size = n
	}
	offset := 0
	if strings.EqualFold(arm.QueryParam(q, "seekOperation"), "next") {
		raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get("MS-ContinuationToken"))
		var tok pcSeekToken
		if err != nil || json.Unmarshal(raw, &tok) != nil || tok.File != file || tok.Offset < 0 {
			return arm.InvalidRequest("MS-ContinuationToken", "seekOperation=Next needs the MS-ContinuationToken of the previous page of this usage.")
		}
		offset = tok.Offset
	}
	header, rows, err := pageRows(offset, size, stream)
	if err != nil {
		return err
	}
	token := ""
	if len(rows) > size {
		rows = rows[:size]
		b, _ := json.Marshal(pcSeekToken{Offset: offset + size, File: file})
		token = base64.RawURLEncoding.EncodeToString(b)
	}
	items := make([]partnercenter.DailyRatedUsageLineItem, 0, len(rows))
	for _, row := range rows {
		it, err := partnercenter.DailyRatedUsage(header, row)
		if err != nil {
			return err
		}
		items = append(items, it)
	}
	self += "&size=" + strconv.Itoa(size)
	WriteJSON(w, http.StatusOK, partnercenter.SeekPage(items, self, self+"&seekOperation=Next", token))
	return nil
}

// utilizationReadyAfter is how long after an hour ends its usage is
// complete in commerce: the stack forwards an hour once it has closed and
// its grace passed, within the bridge's cycle.
const utilizationReadyAfter = 15 * time.Minute

// pcUtilization serves Partner Center's Azure utilization records for a
// customer's subscription: usage per meter per hour or day, unrated, with
// each resource instance when show_details is true (the default). The range
// is of when usage was reported (the stack's reported hour), as Partner
// Center filters; records are bucketed by usage time. Until the range's
// last hour has reached commerce the answer is 204 with Retry-After, as
// Partner Center answers while its data is not ready.
func (s *Server) pcUtilization(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	ctx := r.Context()
	q := r.URL.Query()
	parse := func(name string) (time.Time, error) {
		v := arm.QueryParam(q, name)
		if v == "" {
			return time.Time{}, arm.InvalidRequest(name, "%s is required (a date-time with its UTC offset).", name)
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, arm.InvalidRequest(name, "%s '%s' is not a date-time with its UTC offset, such as 2026-11-01T00:00:00Z.", name, v)
		}
		return t.UTC(), nil
	}
	from, err := parse("start_time")
	if err != nil {
		return err
	}
	to, err := parse("end_time")
	if err != nil {
		return err
	}
	hourly := false
	switch g := strings.ToLower(arm.QueryParam(q, "granularity")); g {
	case "", "daily":
	case "hourly":
		hourly = true
	default:
		return arm.InvalidRequest("granularity", "granularity '%s' is not daily or hourly.", g)
	}
	step := 24 * time.Hour
	if hourly {
		from, to, step = clock.HourStart(from), clock.HourStart(to.Add(time.Hour-time.Microsecond)), time.Hour
	} else {
		from, to = clock.DayStart(from), clock.DayStart(to.Add(24*time.Hour-time.Microsecond))
	}
	switch {
	case !to.After(from):
		return arm.InvalidRequest("end_time", "end_time must be after start_time.")
	case to.Sub(from) > 90*24*time.Hour:
		return arm.InvalidRequest("end_time", "Ask for at most 90 days at a time.")
	}
	details := true
	if v := arm.QueryParam(q, "show_details"); v != "" {
		if details, err = strconv.ParseBool(v); err != nil {
			return arm.InvalidRequest("show_details", "show_details '%s' is not true or false.", v)
		}
	}
	size := 1000
	if v := arm.QueryParam(q, "size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return arm.InvalidRequest("size", "size '%s' is not a page size between 1 and 1000.", v)
		}
		size = n
	}
	// The subscription must be the customer's, among those the caller sees.
	tenant, _ := arm.CanonicalGUID(params["tenantId"])
	sub, _ := arm.CanonicalGUID(params["subscriptionId"])
	subs, err := s.deps.Directory.ListSubscriptions(ctx, p)
	if err != nil {
		return err
	}
	found := false
	for _, x := range subs {
		found = found || (strings.EqualFold(x.ID, sub) && sub != "" && strings.EqualFold(x.CustomerTenantID, tenant) && tenant != "")
	}
	if !found {
		return arm.Errorf(arm.NotFound, "SubscriptionNotFound", "Customer '%s' has no subscription '%s' among yours.", params["tenantId"], params["subscriptionId"])
	}
	if ready := to.Add(utilizationReadyAfter); s.deps.Clock.Now().Before(ready) {
		w.Header().Set("Retry-After", strconv.Itoa(int(ready.Sub(s.deps.Clock.Now())/time.Second)+1))
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	offset := 0
	file := strings.ToLower(sub) + "|" + from.Format(time.RFC3339) + "|" + to.Format(time.RFC3339) + "|" + strconv.FormatBool(hourly) + strconv.FormatBool(details)
	if strings.EqualFold(arm.QueryParam(q, "seekOperation"), "next") {
		raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get("MS-ContinuationToken"))
		var tok pcSeekToken
		if err != nil || json.Unmarshal(raw, &tok) != nil || tok.File != file || tok.Offset < 0 {
			return arm.InvalidRequest("MS-ContinuationToken", "seekOperation=Next needs the MS-ContinuationToken of the previous page of these records.")
		}
		offset = tok.Offset
	}
	rows, err := s.deps.Ledger.Utilization(ctx, strings.ToLower(sub), from, to, hourly, details)
	if errors.Is(err, ledger.ErrTooManyRecords) {
		return arm.InvalidRequest("end_time", "The range holds more records than one request reads; ask for a shorter range.")
	}
	if err != nil {
		return err
	}
	if offset > len(rows) {
		offset = len(rows)
	}
	page := rows[offset:min(len(rows), offset+size)]
	token := ""
	if offset+size < len(rows) {
		b, _ := json.Marshal(pcSeekToken{Offset: offset + size, File: file})
		token = base64.RawURLEncoding.EncodeToString(b)
	}
	items := make([]partnercenter.AzureUtilizationRecord, 0, len(page))
	for _, row := range page {
		res, unit := partnercenter.AzureResource{ID: row.Meter, Region: "Azure Stack"}, ""
		if row.Local {
			if m, ok := s.deps.Meters.Lookup(ctx, row.Meter); ok {
				res.Name, res.Category, unit = m.Name, m.Category, m.Unit
			}
		} else if m, ok, err := s.deps.BillingMap.Billing(ctx, row.Meter, row.Start); err == nil && ok {
			res.Name, res.Category, res.Subcategory, unit = m.Name, m.Category, m.SubCategory, m.Unit
		}
		var inst *partnercenter.AzureInstanceData
		if details {
			inst = &partnercenter.AzureInstanceData{ResourceURI: row.ResourceURI, Location: row.Location, AdditionalInfo: map[string]string{
				"azureStack.MeterId": row.LocalMeter, "azureStack.SubscriptionId": row.LocalSubscription, "azureStack.Location": row.Location,
				"azureStack.EventDateTime": row.Start.Format("01/02/2006 15:04:05")}}
			var tags map[string]string
			if json.Unmarshal([]byte(row.Tags), &tags) == nil && len(tags) > 0 {
				inst.Tags = tags
			}
		}
		items = append(items, partnercenter.Utilization(row.Start, row.Start.Add(step), res, row.Quantity, unit, inst))
	}
	self := "/customers/" + params["tenantId"] + "/subscriptions/" + params["subscriptionId"] + "/utilizations/azure?start_time=" + from.Format(time.RFC3339) +
		"&end_time=" + to.Format(time.RFC3339) + "&granularity=" + map[bool]string{true: "hourly", false: "daily"}[hourly] + "&show_details=" + strconv.FormatBool(details) + "&size=" + strconv.Itoa(size)
	WriteJSON(w, http.StatusOK, partnercenter.SeekPage(items, self, self+"&seekOperation=Next", token))
	return nil
}
