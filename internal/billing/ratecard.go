package billing

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
)

// CSPOffer is the Azure offer of CSP subscriptions (Microsoft Azure, CSP):
// the offer whose prices the CSP price list holds.
const CSPOffer = "MS-AZR-0145P"

// RateCardQuery is a Microsoft.Commerce/RateCard request's $filter: all four
// fields are required, as Azure's RateCard API requires them.
type RateCardQuery struct {
	OfferDurableID, Currency, Locale, RegionInfo string
}

var (
	rateCardTerm   = regexp.MustCompile(`^\s*(\w+)\s+eq\s+'([^']*)'\s*$`)
	rateCardAnd    = regexp.MustCompile(`(?i)\s+and\s+`)
	offerDurableID = regexp.MustCompile(`^MS-AZR-\d{4}[A-Z]$`)
	currencyCode   = regexp.MustCompile(`^[A-Z]{3}$`)
	localeTag      = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$`)
	regionCode     = regexp.MustCompile(`^[A-Z]{2}$`)
)

// ParseRateCardFilter reads "OfferDurableId eq 'MS-AZR-0145P' and Currency
// eq 'USD' and Locale eq 'en-US' and RegionInfo eq 'US'". Field names are
// matched without regard to case; each must appear once.
func ParseRateCardFilter(filter string) (RateCardQuery, error) {
	var q RateCardQuery
	bad := func(format string, args ...any) error {
		return arm.Errorf(arm.Invalid, "InvalidFilter", format, args...).WithTarget("$filter")
	}
	if strings.TrimSpace(filter) == "" {
		return q, bad("$filter is required: OfferDurableId eq 'MS-AZR-0145P' and Currency eq 'USD' and Locale eq 'en-US' and RegionInfo eq 'US'.")
	}
	if len(filter) > 512 {
		return q, bad("$filter is longer than 512 characters.")
	}
	seen := map[string]bool{}
	for _, term := range rateCardAnd.Split(strings.TrimSpace(filter), -1) {
		m := rateCardTerm.FindStringSubmatch(term)
		if m == nil {
			return q, bad("'%s' is not a term of the form Field eq 'value'; terms are joined with 'and'.", strings.TrimSpace(term))
		}
		name, value := strings.ToLower(m[1]), m[2]
		if seen[name] {
			return q, bad("%s appears more than once.", m[1])
		}
		seen[name] = true
		switch name {
		case "offerdurableid":
			if !offerDurableID.MatchString(value) {
				return q, bad("OfferDurableId '%s' is not an offer ID such as %s.", value, CSPOffer)
			}
			q.OfferDurableID = value
		case "currency":
			if !currencyCode.MatchString(value) {
				return q, bad("Currency '%s' is not an ISO 4217 code such as USD.", value)
			}
			q.Currency = value
		case "locale":
			if !localeTag.MatchString(value) {
				return q, bad("Locale '%s' is not a culture such as en-US.", value)
			}
			q.Locale = value
		case "regioninfo":
			if !regionCode.MatchString(value) {
				return q, bad("RegionInfo '%s' is not a two-letter country code such as US.", value)
			}
			q.RegionInfo = value
		default:
			return q, bad("Unknown field '%s': the RateCard filter has OfferDurableId, Currency, Locale and RegionInfo.", m[1])
		}
	}
	for _, f := range []struct{ name, v string }{{"OfferDurableId", q.OfferDurableID}, {"Currency", q.Currency}, {"Locale", q.Locale}, {"RegionInfo", q.RegionInfo}} {
		if f.v == "" {
			return q, bad("$filter lacks %s: all of OfferDurableId, Currency, Locale and RegionInfo are required.", f.name)
		}
	}
	return q, nil
}

// RateCard is Microsoft.Commerce's ResourceRateCardInfo, in the field names
// the Azure SDKs read.
type RateCard struct {
	OfferTerms    []json.RawMessage `json:"OfferTerms"`
	Meters        []RateCardMeter   `json:"Meters"`
	Currency      string            `json:"Currency"`
	Locale        string            `json:"Locale"`
	IsTaxIncluded bool              `json:"IsTaxIncluded"`
}

// RateCardMeter is one meter's MeterInfo. Rates and quantities are exact
// decimals written as JSON numbers.
type RateCardMeter struct {
	MeterID          string                     `json:"MeterId"`
	MeterName        string                     `json:"MeterName"`
	MeterCategory    string                     `json:"MeterCategory"`
	MeterSubCategory string                     `json:"MeterSubCategory"`
	Unit             string                     `json:"Unit"`
	MeterTags        []string                   `json:"MeterTags"`
	MeterRegion      string                     `json:"MeterRegion"`
	MeterRates       map[string]json.RawMessage `json:"MeterRates"`
	EffectiveDate    time.Time                  `json:"EffectiveDate"`
	IncludedQuantity json.RawMessage            `json:"IncludedQuantity"`
}

// RateCard answers Microsoft.Commerce/RateCard for subscription: the Azure
// Stack meters of the price list in force now in the query's currency.
// Only a partner's own subscriptions (its shared-services or default
// subscription) may ask, and the operator on any of them: an end
// customer's subscription is refused, because end customers see no CSP
// prices, and a subscription outside the caller's scope answers as if it
// did not exist.
func (s *Service) RateCard(ctx context.Context, p auth.Principal, subscription string, q RateCardQuery) (RateCard, error) {
	snap, err := s.dir.Snapshot(ctx)
	if err != nil {
		return RateCard{}, err
	}
	id, _ := arm.CanonicalGUID(subscription)
	acct, ok := snap.Account(strings.ToLower(id))
	notFound := arm.Errorf(arm.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", subscription)
	switch {
	case !ok:
		return RateCard{}, notFound
	case p.Role == auth.RoleOperator:
	case p.Role == auth.RolePartner && acct.BillTo == p.PartnerID:
	case p.Role == auth.RoleReseller && acct.Reseller == p.PartnerID:
	default:
		return RateCard{}, notFound
	}
	if acct.Customer != "" || p.Role == auth.RoleReseller {
		return RateCard{}, arm.Errorf(arm.Denied, "RateCardNotAvailable",
			"Subscription '%s' belongs to an end customer: CSP prices are the partner's, and end customers see none. Ask with the partner's own (shared services or default) subscription.", subscription)
	}
	if q.OfferDurableID != CSPOffer {
		return RateCard{}, arm.Errorf(arm.Invalid, "OfferNotSupported",
			"Azure Stack Hub usage is priced from the CSP price list, offer %s; '%s' has no prices here.", CSPOffer, q.OfferDurableID).WithTarget("$filter")
	}
	return s.rateCardInForce(ctx, q.Currency, q.Locale, "$filter")
}

// PartnerRateCard is the CSP Azure rate card a partner reads (Partner
// Center's GET /v1/ratecards/azure): the price list in force in currency
// ("" for the partner's agreement currency, else USD). Partners and the
// operator read it; resellers see prices only through their provider's
// price book, and end customers see none.
func (s *Service) PartnerRateCard(ctx context.Context, p auth.Principal, currency, locale string) (RateCard, error) {
	if err := s.canReadPriceList(ctx, p); err != nil {
		return RateCard{}, err
	}
	if currency == "" {
		currency = "USD"
		if p.Role == auth.RolePartner {
			if c, ok, err := s.agreementCurrency(ctx, p.PartnerID); err != nil {
				return RateCard{}, err
			} else if ok {
				currency = c
			}
		}
	}
	if !currencyCode.MatchString(currency) {
		return RateCard{}, arm.Errorf(arm.Invalid, "InvalidCurrency", "Currency '%s' is not an ISO 4217 code such as USD.", currency).WithTarget("currency")
	}
	return s.rateCardInForce(ctx, currency, locale, "currency")
}

// rateCardInForce is the price list in force now in currency, as a rate
// card.
func (s *Service) rateCardInForce(ctx context.Context, currency, locale, target string) (RateCard, error) {
	q := RateCardQuery{Currency: currency, Locale: locale}
	c, err := newCatalog(ctx, s.db)
	if err != nil {
		return RateCard{}, err
	}
	now := s.clock.Now()
	vs := c.versions[q.Currency]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].from.After(now) }) - 1
	if i < 0 {
		var have []string
		for cur, vs := range c.versions {
			if len(vs) > 0 && !vs[0].from.After(now) {
				have = append(have, cur)
			}
		}
		sort.Strings(have)
		return RateCard{}, arm.Errorf(arm.Invalid, "CurrencyNotSupported", "No price list in %s is in force; prices are in: %s.", q.Currency, strings.Join(have, ", ")).WithTarget(target)
	}
	pl, err := s.priceList(ctx, vs[i].id, true)
	if err != nil {
		return RateCard{}, err
	}
	out := RateCard{OfferTerms: []json.RawMessage{}, Meters: []RateCardMeter{}, Currency: pl.Currency, Locale: q.Locale}
	for _, pr := range pl.Prices {
		m := RateCardMeter{MeterID: pr.MeterID, MeterName: pr.MeterName, MeterCategory: pr.Category, MeterSubCategory: pr.SubCategory, Unit: pr.Unit,
			MeterTags: []string{}, MeterRegion: pr.Region, MeterRates: map[string]json.RawMessage{}, EffectiveDate: pl.EffectiveFrom,
			IncludedQuantity: json.RawMessage(pr.IncludedQuantity.String())}
		for _, t := range pr.Tiers {
			m.MeterRates[t.From.String()] = json.RawMessage(t.Price.String())
		}
		out.Meters = append(out.Meters, m)
	}
	return out, nil
}

// agreementCurrency is the currency of partner's billing agreement.
func (s *Service) agreementCurrency(ctx context.Context, partner string) (string, bool, error) {
	var cur string
	err := s.db.QueryRowContext(ctx, `SELECT currency FROM billing_agreements WHERE partner_id = ?`, partner).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return cur, err == nil, err
}

// FinalInvoices lists the finalized invoices p may see, newest period
// first: the invoices Partner Center lists (a draft is unbilled usage, not
// an invoice yet). Resellers are invoiced by their provider, not here.
func (s *Service) FinalInvoices(ctx context.Context, p auth.Principal) ([]Invoice, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, err
	}
	out := []Invoice{}
	if sc.reseller {
		return out, nil
	}
	q := `SELECT DISTINCT period FROM invoices`
	var args []any
	if !sc.all {
		q += ` WHERE partner_id = ?`
		args = append(args, sc.partner)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY period DESC`, args...)
	if err != nil {
		return nil, err
	}
	var periods []string
	for rows.Next() {
		var per string
		if err := rows.Scan(&per); err != nil {
			rows.Close()
			return nil, err
		}
		periods = append(periods, per)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	partner := ""
	if !sc.all {
		partner = sc.partner
	}
	for _, per := range periods {
		invs, err := s.storedInvoices(ctx, per, partner)
		if err != nil {
			return nil, err
		}
		var ids []string
		for id := range invs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			out = append(out, *invs[id])
		}
	}
	return out, nil
}
