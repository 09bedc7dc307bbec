// Package directory is the partner directory behind registrations: CSP
// partners (direct, indirect providers and their resellers), end customers
// identified by their directory tenant, and Azure subscriptions with their
// offer type and the partner each one rolls up to.
//
// The rolls-up partner is the partner holding the billing relationship: a
// direct CSP for its own customers, or the indirect provider for every
// reseller's customers. The seeds' rule "you cannot register someone else's
// customers" is a comparison of rolls-up partners, so the directory keeps
// that relation consistent on every write: a CSP subscription's customer must
// belong to the subscription's partner or to one of its resellers.
//
// Every change is appended to directory_changes with who made it and when, so
// billing can ask what was true at any past hour (AsOf), and is announced to
// every process sharing the database, whose cache of Resolve's answers it
// empties (resolvecache.go).
package directory

import (
	"errors"
	"regexp"
	"strings"

	"github.com/stackbill/stackbill/internal/arm"
)

// PartnerType is a partner's place in the CSP program.
type PartnerType string

const (
	DirectCSP        PartnerType = "DirectCSP"
	IndirectProvider PartnerType = "IndirectProvider"
	IndirectReseller PartnerType = "IndirectReseller"
)

// Offer is an Azure subscription's offer type.
type Offer string

const (
	// OfferCSP is a customer's subscription bought through a CSP partner.
	OfferCSP Offer = "CSP"
	// OfferCSPSS is a partner's own shared-services subscription (APSS).
	OfferCSPSS Offer = "CSPSS"
	OfferEA    Offer = "EA"
	OfferPAYG  Offer = "PAYG"
)

// Partner is a CSP partner.
type Partner struct {
	ID       string      `json:"id"`
	Name     string      `json:"name"`
	Type     PartnerType `json:"type"`
	Provider string      `json:"provider,omitempty"` // resellers only
	MpnID    string      `json:"mpnId,omitempty"`
}

// Customer is an end customer, identified by its directory tenant.
type Customer struct {
	TenantID string `json:"tenantId"`
	Name     string `json:"name"`
	Partner  string `json:"partner"` // a direct CSP or a reseller
}

// Subscription is an Azure subscription known to commerce.
type Subscription struct {
	ID               string `json:"id"`
	Offer            Offer  `json:"offer"`
	Partner          string `json:"partner,omitempty"` // the partner it rolls up to
	CustomerTenantID string `json:"customerTenantId,omitempty"`
	Name             string `json:"name,omitempty"`
}

// ResolvedSubscription is what registration rules need to know about a
// subscription: its offer and who it rolls up to.
type ResolvedSubscription struct {
	ID               string `json:"id"`
	Offer            Offer  `json:"offer"`
	RollsUpTo        string `json:"rollsUpTo,omitempty"`
	CustomerTenantID string `json:"customerTenantId,omitempty"`
	// Reseller is the indirect reseller whose customer owns the subscription.
	Reseller string `json:"reseller,omitempty"`
	// Scope is the partner whose audit view includes records about the
	// subscription (ScopeOfSubscription), so that a writer holding the
	// answer need not ask again inside its transaction. A remote directory
	// may leave it out; callers then ask ScopeOfSubscription.
	Scope string `json:"scope,omitempty"`
}

// ErrNotFound means the directory has no such entry.
var ErrNotFound = errors.New("not found in the directory")

var partnerIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// lookups gives validation read access to the directory as it will be after
// the change, whether that view is a transaction or an import overlay.
type lookups struct {
	partner  func(id string) (Partner, bool, error)
	customer func(tenantID string) (Customer, bool, error)
}

func invalid(target, format string, args ...any) *arm.Error {
	return arm.InvalidRequest(target, format, args...)
}

// normalizePartner checks a partner's own fields and its provider.
func normalizePartner(p *Partner, lk lookups) error {
	p.ID = strings.TrimSpace(p.ID)
	p.Name = strings.TrimSpace(p.Name)
	if !partnerIDRe.MatchString(p.ID) {
		return invalid("id", "partner id %q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", p.ID)
	}
	if p.Name == "" {
		return invalid("name", "partner %q needs a name", p.ID)
	}
	switch p.Type {
	case DirectCSP, IndirectProvider:
		if p.Provider != "" {
			return invalid("provider", "partner %q is a %s; only an IndirectReseller has a provider", p.ID, p.Type)
		}
	case IndirectReseller:
		if p.Provider == "" {
			return invalid("provider", "reseller %q must name its indirect provider", p.ID)
		}
		prov, ok, err := lk.partner(p.Provider)
		if err != nil {
			return err
		}
		if !ok {
			return invalid("provider", "reseller %q names provider %q, which is not in the directory", p.ID, p.Provider)
		}
		if prov.Type != IndirectProvider {
			return invalid("provider", "reseller %q names provider %q, which is a %s, not an IndirectProvider", p.ID, p.Provider, prov.Type)
		}
	default:
		return invalid("type", "partner %q has type %q; want DirectCSP, IndirectProvider or IndirectReseller", p.ID, p.Type)
	}
	return nil
}

func normalizeCustomer(c *Customer, lk lookups) error {
	id, ok := arm.CanonicalGUID(strings.TrimSpace(c.TenantID))
	if !ok {
		return invalid("tenantId", "customer tenantId %q is not a GUID", c.TenantID)
	}
	c.TenantID = id
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" {
		return invalid("name", "customer %s needs a name", c.TenantID)
	}
	p, ok, err := lk.partner(c.Partner)
	if err != nil {
		return err
	}
	if !ok {
		return invalid("partner", "customer %s names partner %q, which is not in the directory", c.TenantID, c.Partner)
	}
	if p.Type == IndirectProvider {
		return invalid("partner", "customer %s names %q, an IndirectProvider; end customers belong to a DirectCSP or to an IndirectReseller", c.TenantID, c.Partner)
	}
	return nil
}

func normalizeSubscription(s *Subscription, lk lookups) error {
	id, ok := arm.CanonicalGUID(strings.TrimSpace(s.ID))
	if !ok {
		return invalid("id", "subscription id %q is not a GUID", s.ID)
	}
	s.ID = id
	if s.CustomerTenantID != "" {
		t, ok := arm.CanonicalGUID(strings.TrimSpace(s.CustomerTenantID))
		if !ok {
			return invalid("customerTenantId", "subscription %s: customerTenantId %q is not a GUID", s.ID, s.CustomerTenantID)
		}
		s.CustomerTenantID = t
	}
	var holder Partner
	if s.Partner != "" {
		p, ok, err := lk.partner(s.Partner)
		if err != nil {
			return err
		}
		if !ok {
			return invalid("partner", "subscription %s names partner %q, which is not in the directory", s.ID, s.Partner)
		}
		holder = p
	}
	switch s.Offer {
	case OfferCSP, OfferCSPSS:
		if s.Partner == "" {
			return invalid("partner", "%s subscription %s must name the partner it rolls up to", s.Offer, s.ID)
		}
		if holder.Type == IndirectReseller {
			return invalid("partner", "subscription %s names reseller %q; a subscription rolls up to the partner holding the billing relationship, here its provider %q", s.ID, holder.ID, holder.Provider)
		}
	case OfferEA, OfferPAYG:
	default:
		return invalid("offer", "subscription %s has offer %q; want CSP, CSPSS, EA or PAYG", s.ID, s.Offer)
	}
	switch {
	case s.Offer == OfferCSP && s.CustomerTenantID == "":
		return invalid("customerTenantId", "CSP subscription %s must name its customer's tenant (customerTenantId)", s.ID)
	case s.Offer == OfferCSPSS && s.CustomerTenantID != "":
		return invalid("customerTenantId", "CSPSS subscription %s is the partner's own and has no customer", s.ID)
	}
	if s.CustomerTenantID != "" {
		c, ok, err := lk.customer(s.CustomerTenantID)
		if err != nil {
			return err
		}
		if !ok {
			return invalid("customerTenantId", "subscription %s names customer %s, which is not in the directory", s.ID, s.CustomerTenantID)
		}
		if s.Offer == OfferCSP {
			owner, _, err := lk.partner(c.Partner)
			if err != nil {
				return err
			}
			if rollsUp(owner) != s.Partner {
				return invalid("partner", "CSP subscription %s rolls up to %q, but its customer %s belongs to %q, which rolls up to %q", s.ID, s.Partner, c.TenantID, c.Partner, rollsUp(owner))
			}
		}
	}
	return nil
}

func notFound(kind, id string) *arm.Error {
	return arm.Errorf(arm.NotFound, kind+"NotFound", "The %s '%s' was not found in the directory.", strings.ToLower(kind), id)
}

func forbidden(format string, args ...any) *arm.Error {
	return arm.Errorf(arm.Denied, "AuthorizationFailed", format, args...)
}
