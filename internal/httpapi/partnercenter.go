package httpapi

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
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
func (s *Server) pcFinal(r *http.Request, p auth.Principal, id string) (partnercenter.Invoice, error) {
	inv, err := s.deps.Billing.Invoice(r.Context(), p, id)
	if err != nil {
		return partnercenter.Invoice{}, err
	}
	if inv.FinalizedAt == nil {
		return partnercenter.Invoice{}, arm.Errorf(arm.NotFound, "InvoiceNotFound", "Invoice '%s' is a draft until its period is finalized; its usage is unbilled until then.", id)
	}
	return partnercenter.FromInvoice(inv), nil
}

func (s *Server) pcInvoice(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.pcFinal(r, p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
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
	if !strings.EqualFold(provider, "azure") {
		return arm.InvalidRequest("provider", "Billing provider '%s' has no line items here: Azure Stack Hub usage is billed under provider Azure.", provider)
	}
	if !strings.EqualFold(kind, "BillingLineItems") {
		return arm.InvalidRequest("invoicelineitemtype", "Invoice line item type '%s' is not served: ask for BillingLineItems (the daily usage behind each line is in the reconciliation file).", kind)
	}
	size, offset, err := pcPage(r, 1000)
	if err != nil {
		return err
	}
	id := params["id"]
	if _, err := s.pcFinal(r, p, id); err != nil {
		return err
	}
	inv, err := s.deps.Billing.Invoice(r.Context(), p, id)
	if err != nil {
		return err
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
