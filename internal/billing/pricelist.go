package billing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// Tier is one step of a graduated rate: Price applies to the quantity above
// From (in the price's unit), up to the next tier's From.
type Tier struct {
	From  money.Quantity `json:"from"`
	Price money.Quantity `json:"price"`
}

// Price is one meter's row of a price list version.
type Price struct {
	MeterID          string         `json:"meterId"`
	MeterName        string         `json:"meterName"`
	Category         string         `json:"meterCategory"`
	SubCategory      string         `json:"meterSubCategory"`
	Region           string         `json:"meterRegion"`
	Unit             string         `json:"unit"`
	IncludedQuantity money.Quantity `json:"includedQuantity"`
	Tiers            []Tier         `json:"tiers"`
}

// PriceList is one imported version.
type PriceList struct {
	ID            int64     `json:"id"`
	Currency      string    `json:"currency"`
	EffectiveFrom time.Time `json:"effectiveFrom"`
	Source        string    `json:"source"`
	Kept          int       `json:"rowsKept"`
	Skipped       int       `json:"rowsSkipped"`
	ImportedAt    time.Time `json:"importedAt"`
	ImportedBy    string    `json:"importedBy"`
	Prices        []Price   `json:"prices,omitempty"`
}

// ImportReport tells the importer what happened to every row.
type ImportReport struct {
	PriceList  PriceList      `json:"priceList"`
	Unchanged  bool           `json:"unchanged"`
	RowsRead   int            `json:"rowsRead"`
	RowsKept   int            `json:"rowsKept"`
	RowsSkip   int            `json:"rowsSkipped"`
	SkipReason map[string]int `json:"skipReasons"`
}

// Column spellings accepted for each field: the CSP Azure rate card
// (AzureMeter: Id, Name, Category, Subcategory, Region, Unit, Rates, Tags,
// IncludedQuantity, EffectiveDate), the Azure RateCard MeterInfo names
// (MeterId, MeterName, ..., MeterRates, MeterTags) and the partner-center
// price-list and recon spellings (UnitOfMeasure, TierMinimumUnits,
// UnitPrice, Currency/PricingCurrency, EffectiveStartDate). Matching ignores
// case, spaces, underscores and hyphens.
func columnAliases() map[string][]string {
	return map[string][]string{
		"meterid":     {"meterid", "id", "resourceguid"},
		"metername":   {"metername", "name"},
		"category":    {"metercategory", "category"},
		"subcategory": {"metersubcategory", "subcategory"},
		"region":      {"meterregion", "region"},
		"unit":        {"unit", "unitofmeasure"},
		"rates":       {"meterrates", "rates"},
		"tierfrom":    {"tierminimumunits", "tierminimum", "quantitythreshold", "tier"},
		"price":       {"unitprice", "price", "listprice", "rate"},
		"included":    {"includedquantity"},
		"currency":    {"currency", "currencycode", "pricingcurrency", "billingcurrency"},
		"effective":   {"effectivedate", "effectivestartdate"},
		"tags":        {"tags", "metertags"},
	}
}

func normHeader(s string) string {
	s = strings.TrimPrefix(s, "\ufeff")
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '_', '-', '\t':
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(s)))
}

// stackRegion reports whether a row belongs to Azure Stack: the seeds' step 4,
// "Filter on Region = Azure Stack" (newer lists say "Azure Stack Hub").
func stackRegion(r string) bool {
	r = strings.ToLower(strings.Join(strings.Fields(r), " "))
	return r == "azure stack" || r == "azure stack hub"
}

// parsed is a validated file, before storage.
type parsed struct {
	currency  string
	effective time.Time
	prices    []Price
	report    ImportReport
}

// lineErrors collects problems by where they are; a file with any is
// refused whole.
type lineErrors []string

func (e *lineErrors) add(where string, format string, args ...any) {
	*e = append(*e, where+": "+fmt.Sprintf(format, args...))
}

// parsePriceList reads a price list, CSV or .xlsx. Rows outside Azure Stack
// are skipped and counted; every other problem is reported by line (row and
// cell in a spreadsheet) and the file is refused.
func parsePriceList(data []byte, effectiveOverride time.Time) (parsed, error) {
	t, err := readPriceTable(data)
	if err != nil {
		return parsed{}, err
	}
	header := t.header
	col := map[string]int{}
	for i, h := range header {
		n := normHeader(h)
		for field, names := range columnAliases() {
			for _, a := range names {
				if n == a {
					if _, dup := col[field]; dup {
						return parsed{}, invalidPriceList("The header: two columns (%q and another) both give %s.", h, field)
					}
					col[field] = i
				}
			}
		}
	}
	var missing []string
	for _, f := range []string{"meterid", "region", "unit", "currency"} {
		if _, ok := col[f]; !ok {
			missing = append(missing, f)
		}
	}
	_, hasRates := col["rates"]
	_, hasPrice := col["price"]
	if !hasRates && !hasPrice {
		missing = append(missing, "rates (MeterRates) or UnitPrice")
	}
	if _, ok := col["effective"]; !ok && effectiveOverride.IsZero() {
		missing = append(missing, "effectivedate (or give the effective date explicitly)")
	}
	if len(missing) > 0 {
		return parsed{}, invalidPriceList("The header lacks required columns: %s.", strings.Join(missing, ", "))
	}
	at := func(line int, field string) string {
		c, ok := col[field]
		if !ok {
			c = -1
		}
		return t.where(line, c)
	}
	get := func(rec []string, f string) string {
		if i, ok := col[f]; ok && i < len(rec) {
			v := strings.TrimSpace(rec[i])
			if t.sheet && (f == "price" || f == "tierfrom" || f == "included") {
				v = sheetNumber(v)
			}
			return v
		}
		return ""
	}
	p := parsed{report: ImportReport{SkipReason: map[string]int{}}}
	var errs lineErrors
	byMeter := map[string]*Price{}
	firstLine := map[string]int{}
	var order []string
	var latest time.Time
	if t.err != nil {
		errs.add(t.where(t.line, -1), "%v", t.err)
	}
	for _, row := range t.rows {
		rec, line := row.rec, row.line
		if blank(rec) {
			continue
		}
		p.report.RowsRead++
		if region := get(rec, "region"); !stackRegion(region) {
			p.report.RowsSkip++
			p.report.SkipReason[fmt.Sprintf("region %q is not Azure Stack", region)]++
			continue
		}
		p.report.RowsKept++
		id, ok := arm.CanonicalGUID(get(rec, "meterid"))
		if !ok {
			errs.add(at(line, "meterid"), "MeterId %q is not a GUID", get(rec, "meterid"))
			continue
		}
		cur := strings.ToUpper(get(rec, "currency"))
		if _, ok := MinorUnits(cur); !ok {
			errs.add(at(line, "currency"), "unknown currency %q (want an ISO 4217 code such as USD)", get(rec, "currency"))
			continue
		}
		if p.currency == "" {
			p.currency = cur
		} else if cur != p.currency {
			errs.add(at(line, "currency"), "currency %s differs from the file's %s; one price list holds one currency", cur, p.currency)
			continue
		}
		if effectiveOverride.IsZero() {
			v := get(rec, "effective")
			if t.sheet {
				v, _ = sheetDate(v)
			}
			d, err := parseDate(v)
			if err != nil {
				errs.add(at(line, "effective"), "EffectiveDate: %v", err)
				continue
			}
			if d.After(latest) {
				latest = d
			}
		}
		unit := get(rec, "unit")
		if unit == "" {
			errs.add(at(line, "unit"), "Unit is empty")
			continue
		}
		if _, err := unitDivisor(unit); err != nil {
			errs.add(at(line, "unit"), "%v", err)
			continue
		}
		var tiers []Tier
		field := "rates"
		if hasRates && get(rec, "rates") != "" {
			tiers, err = parseRates(get(rec, "rates"))
		} else {
			var tier Tier
			field = "price"
			tier, err = parseTierColumns(get(rec, "tierfrom"), get(rec, "price"))
			tiers = []Tier{tier}
		}
		if err != nil {
			errs.add(at(line, field), "%v", err)
			continue
		}
		included := money.Zero
		if s := get(rec, "included"); s != "" {
			included, err = money.ParseQuantity(s)
			if err != nil || included.Sign() < 0 || included.Above(money.MaxRecordQuantity) {
				errs.add(at(line, "included"), "IncludedQuantity %q is not a decimal between 0 and %s", s, money.MaxRecordQuantity)
				continue
			}
		}
		pr, seen := byMeter[id]
		if !seen {
			pr = &Price{MeterID: id, MeterName: get(rec, "metername"), Category: get(rec, "category"), SubCategory: get(rec, "subcategory"),
				Region: get(rec, "region"), Unit: unit, IncludedQuantity: included}
			byMeter[id], firstLine[id] = pr, line
			order = append(order, id)
		} else if pr.Unit != unit || !pr.IncludedQuantity.Equal(included) {
			errs.add(at(line, "unit"), "meter %s repeats %s with a different unit or included quantity", id, t.where(firstLine[id], -1))
			continue
		}
		for _, tier := range tiers {
			for _, have := range pr.Tiers {
				if have.From.Equal(tier.From) {
					errs.add(at(line, "tierfrom"), "meter %s has two prices for the tier from %s", id, tier.From)
				}
			}
			pr.Tiers = append(pr.Tiers, tier)
		}
	}
	for _, id := range order {
		pr := byMeter[id]
		sort.Slice(pr.Tiers, func(i, j int) bool { return pr.Tiers[i].From.Cmp(pr.Tiers[j].From) < 0 })
		if !pr.Tiers[0].From.IsZero() {
			errs.add(t.where(firstLine[id], -1), "meter %s: the first tier must start at 0, not %s", id, pr.Tiers[0].From)
		}
		p.prices = append(p.prices, *pr)
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("and %d more", len(errs)-20))
		}
		return parsed{}, invalidPriceList("The price list was not imported: %s.", strings.Join(errs, "; "))
	}
	if len(p.prices) == 0 {
		return parsed{}, invalidPriceList("The price list has no Azure Stack rows (%d rows read, all skipped); nothing was imported.", p.report.RowsRead)
	}
	p.effective = latest
	if !effectiveOverride.IsZero() {
		p.effective = effectiveOverride
	}
	sort.Slice(p.prices, func(i, j int) bool { return p.prices[i].MeterID < p.prices[j].MeterID })
	return p, nil
}

func invalidPriceList(format string, args ...any) *arm.Error {
	return arm.Errorf(arm.Invalid, "InvalidPriceList", format, args...)
}

func parseDate(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02", time.RFC3339, "2006-01-02T15:04:05", "1/2/2006", "01/02/2006 15:04:05", "1/2/2006 3:04:05 PM"} {
		if t, err := time.Parse(layout, s); err == nil {
			return clock.DayStart(t), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date (want YYYY-MM-DD)", s)
}

// maxTiers bounds a meter's tiers (Azure's rate cards have a handful).
const maxTiers = 100

// parseRates reads a rate card's MeterRates: either JSON ({"0": 0.008,
// "1000": 0.007}) or "0:0.008;1000:0.007".
func parseRates(s string) ([]Tier, error) {
	var tiers []Tier
	if strings.HasPrefix(s, "{") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return nil, fmt.Errorf("MeterRates %q is not a JSON object of threshold → price", s)
		}
		for k, v := range m {
			t, err := parseTierColumns(k, strings.Trim(string(v), `"`))
			if err != nil {
				return nil, err
			}
			tiers = append(tiers, t)
		}
	} else {
		for _, part := range strings.Split(s, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok {
				return nil, fmt.Errorf("MeterRates %q: want threshold:price pairs separated by ';'", s)
			}
			t, err := parseTierColumns(k, v)
			if err != nil {
				return nil, err
			}
			tiers = append(tiers, t)
		}
	}
	if len(tiers) == 0 {
		return nil, fmt.Errorf("MeterRates is empty")
	}
	if len(tiers) > maxTiers {
		return nil, fmt.Errorf("MeterRates has %d tiers; a meter has at most %d", len(tiers), maxTiers)
	}
	for i := range tiers {
		for j := i + 1; j < len(tiers); j++ {
			if tiers[i].From.Equal(tiers[j].From) {
				return nil, fmt.Errorf("MeterRates has two prices for the tier from %s", tiers[i].From)
			}
		}
	}
	return tiers, nil
}

func parseTierColumns(from, price string) (Tier, error) {
	var t Tier
	var err error
	if strings.TrimSpace(from) != "" {
		if t.From, err = money.ParseQuantity(from); err != nil || t.From.Sign() < 0 || t.From.Above(money.MaxRecordQuantity) {
			return t, fmt.Errorf("tier threshold %q is not a decimal between 0 and %s", from, money.MaxRecordQuantity)
		}
	}
	if t.Price, err = money.ParseQuantity(price); err != nil || t.Price.Sign() < 0 || t.Price.Above(money.MaxUnitPrice) {
		return t, fmt.Errorf("price %q is not a decimal between 0 and %s", price, money.MaxUnitPrice)
	}
	return t, nil
}

// unitDivisor is how many of a meter's hourly billing units make one unit of
// the price: 730 when a price is per month (Azure's 730-hour month) and the
// billed quantity is per hour (GB/Hr storage), else 1. It is the only unit
// conversion stackbill performs, and it is exact: thresholds are multiplied,
// amounts divided once, just before rounding.
func unitDivisor(unit string) (int64, error) {
	u := strings.ToLower(unit)
	if strings.Contains(u, "/month") || strings.Contains(u, "/mo") {
		if strings.Contains(u, "gb") {
			return hoursPerMonth, nil
		}
	}
	if u == "" {
		return 0, fmt.Errorf("empty unit")
	}
	return 1, nil
}

const hoursPerMonth = 730

func (p parsed) digest() string {
	b, _ := json.Marshal(struct {
		C string
		E int64
		P []Price
	}{p.currency, clock.Micros(p.effective), p.prices})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ImportPriceList stores a new price list version. It is all or nothing:
// malformed rows are reported by line and nothing is stored. A file equal to
// an existing version is accepted as unchanged; a different file for the same
// currency and effective date overlaps that version and is refused, as is a
// version that would reprice a finalized period.
func (s *Service) ImportPriceList(ctx context.Context, p auth.Principal, source string, data []byte, effective time.Time) (ImportReport, error) {
	if p.Role != auth.RoleOperator {
		return ImportReport{}, arm.Forbidden(p.Actor(), "priceLists/write", "/v1/billing/price-lists")
	}
	parsed, err := parsePriceList(data, effective)
	if err != nil {
		return ImportReport{}, err
	}
	rep := parsed.report
	digest := parsed.digest()
	now := s.clock.Now()
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		var id int64
		var have string
		err := tx.QueryRowContext(ctx, `SELECT id, digest FROM price_lists WHERE currency = ? AND effective_from_us = ?`, parsed.currency, clock.Micros(parsed.effective)).Scan(&id, &have)
		switch {
		case err == nil && have == digest:
			rep.Unchanged = true
			rep.PriceList.ID = id
			return nil
		case err == nil:
			return arm.Errorf(arm.Invalid, "OverlappingPriceList",
				"Price list version %d already covers %s from %s with different prices; import with a later effective date instead of overlapping it.",
				id, parsed.currency, parsed.effective.Format("2006-01-02"))
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var last sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT MAX(period) FROM billing_periods`).Scan(&last); err != nil {
			return err
		}
		if last.Valid {
			_, end, _ := clock.PeriodBounds(last.String)
			if parsed.effective.Before(end) {
				return arm.Errorf(arm.Invalid, "PriceListRepricesFinalizedPeriod",
					"A price list effective %s would reprice the finalized period %s; give an effective date on or after %s.",
					parsed.effective.Format("2006-01-02"), last.String, end.Format("2006-01-02"))
			}
		}
		if s.db.Dialect == store.Postgres {
			err = tx.QueryRowContext(ctx, `INSERT INTO price_lists (currency, effective_from_us, digest, source, rows_kept, rows_skipped, imported_at_us, imported_by)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, parsed.currency, clock.Micros(parsed.effective), digest, source, rep.RowsKept, rep.RowsSkip, clock.Micros(now), p.Actor()).Scan(&id)
		} else {
			var res sql.Result
			res, err = tx.ExecContext(ctx, `INSERT INTO price_lists (currency, effective_from_us, digest, source, rows_kept, rows_skipped, imported_at_us, imported_by)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, parsed.currency, clock.Micros(parsed.effective), digest, source, rep.RowsKept, rep.RowsSkip, clock.Micros(now), p.Actor())
			if err == nil {
				id, err = res.LastInsertId()
			}
		}
		if err != nil {
			return fmt.Errorf("store price list: %w", err)
		}
		for _, pr := range parsed.prices {
			tiers, _ := json.Marshal(pr.Tiers)
			if _, err := tx.ExecContext(ctx, `INSERT INTO prices (price_list_id, meter_id, meter_name, category, subcategory, region, unit, included_quantity, tiers)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, pr.MeterID, pr.MeterName, pr.Category, pr.SubCategory, pr.Region, pr.Unit, pr.IncludedQuantity.String(), string(tiers)); err != nil {
				return fmt.Errorf("store price: %w", err)
			}
		}
		rep.PriceList.ID = id
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "priceList.import", Kind: "priceList", ID: fmt.Sprint(id),
			After: audit.JSON(map[string]any{"currency": parsed.currency, "effectiveFrom": parsed.effective, "digest": digest, "source": source, "prices": parsed.prices})})
	})
	if err != nil {
		return ImportReport{}, err
	}
	pl, err := s.priceList(ctx, rep.PriceList.ID, false)
	if err != nil {
		return ImportReport{}, err
	}
	rep.PriceList = pl
	s.logger.Info("price list imported", "id", pl.ID, "currency", pl.Currency, "effective", pl.EffectiveFrom.Format("2006-01-02"),
		"kept", rep.RowsKept, "skipped", rep.RowsSkip, "unchanged", rep.Unchanged, "actor", p.Actor())
	return rep, nil
}

// PriceLists lists versions. Partners (direct and indirect providers) read the
// CSP price list; resellers and end customers never see it.
func (s *Service) PriceLists(ctx context.Context, p auth.Principal) ([]PriceList, error) {
	if err := s.canReadPriceList(ctx, p); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM price_lists ORDER BY currency, effective_from_us`)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	out := []PriceList{}
	for _, id := range ids {
		pl, err := s.priceList(ctx, id, false)
		if err != nil {
			return nil, err
		}
		out = append(out, pl)
	}
	return out, nil
}

// PriceList returns one version with its prices.
func (s *Service) PriceList(ctx context.Context, p auth.Principal, id int64) (PriceList, error) {
	if err := s.canReadPriceList(ctx, p); err != nil {
		return PriceList{}, err
	}
	return s.priceList(ctx, id, true)
}

func (s *Service) canReadPriceList(ctx context.Context, p auth.Principal) error {
	switch p.Role {
	case auth.RoleOperator:
		return nil
	case auth.RolePartner:
		return nil
	}
	return arm.Forbidden(p.Actor(), "priceLists/read", "/v1/billing/price-lists")
}

func (s *Service) priceList(ctx context.Context, id int64, withPrices bool) (PriceList, error) {
	var pl PriceList
	var eff, imp int64
	err := s.db.QueryRowContext(ctx, `SELECT id, currency, effective_from_us, source, rows_kept, rows_skipped, imported_at_us, imported_by FROM price_lists WHERE id = ?`, id).
		Scan(&pl.ID, &pl.Currency, &eff, &pl.Source, &pl.Kept, &pl.Skipped, &imp, &pl.ImportedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return PriceList{}, arm.Errorf(arm.NotFound, "PriceListNotFound", "Price list %d was not found.", id)
	}
	if err != nil {
		return PriceList{}, err
	}
	pl.EffectiveFrom, pl.ImportedAt = clock.FromMicros(eff), clock.FromMicros(imp)
	if withPrices {
		pl.Prices, err = s.prices(ctx, id)
	}
	return pl, err
}

func (s *Service) prices(ctx context.Context, id int64) ([]Price, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT meter_id, meter_name, category, subcategory, region, unit, included_quantity, tiers FROM prices WHERE price_list_id = ? ORDER BY meter_id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Price
	for rows.Next() {
		var pr Price
		var tiers string
		if err := rows.Scan(&pr.MeterID, &pr.MeterName, &pr.Category, &pr.SubCategory, &pr.Region, &pr.Unit, &pr.IncludedQuantity, &tiers); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(tiers), &pr.Tiers); err != nil {
			return nil, fmt.Errorf("price list %d meter %s: %w", id, pr.MeterID, err)
		}
		out = append(out, pr)
	}
	return out, rows.Err()
}

// SamplePriceList is the shipped sample (data/sample-price-list.csv): the
// published list prices of reference §6.2, in USD, effective 2019-12-03.
func SamplePriceList() []byte { return bytes.Clone(samplePriceList) }
