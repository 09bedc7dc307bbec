package httpapi

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
)

// importPriceList takes a CSV price list as the body; ?effective=YYYY-MM-DD
// overrides the file's EffectiveDate and ?source= names it.
// xlsxMediaType is an .xlsx spreadsheet's media type.
const xlsxMediaType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

func (s *Server) importPriceList(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "text/csv" || mt == "text/plain" || mt == "application/octet-stream" || mt == xlsxMediaType) {
			return arm.Errorf(arm.Unsupported, "UnsupportedMediaType", "The content type '%s' is not supported; send text/csv, or %s for an .xlsx price list.", ct, xlsxMediaType)
		}
	}
	raw, err := readLimited(w, r, 32*s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	// A spreadsheet is a ZIP archive, binary: its cells are checked where
	// it is parsed. Text must be storable as it is.
	if !billing.IsSpreadsheet(raw) {
		if raw, err = storableBody(raw, nil); err != nil {
			return err
		}
	}
	var eff time.Time
	if v := r.URL.Query().Get("effective"); v != "" {
		if eff, err = time.Parse("2006-01-02", v); err != nil {
			return arm.InvalidRequest("effective", "'%s' is not a date (want YYYY-MM-DD).", v)
		}
	}
	source := r.URL.Query().Get("source")
	if source == "" {
		source = "upload"
	}
	rep, err := s.deps.Billing.ImportPriceList(r.Context(), p, source, raw, eff)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if rep.Unchanged {
		status = http.StatusOK
	}
	WriteJSON(w, status, rep)
	return nil
}

func (s *Server) listPriceLists(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Billing.PriceLists(r.Context(), p)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) getPriceList(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	id, err := strconv.ParseInt(params["id"], 10, 64)
	if err != nil {
		return arm.Errorf(arm.NotFound, "PriceListNotFound", "Price list '%s' was not found.", params["id"])
	}
	out, err := s.deps.Billing.PriceList(r.Context(), p, id)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) putAgreement(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in billing.Agreement
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	if in.PartnerID == "" {
		in.PartnerID = params["partnerId"]
	} else if in.PartnerID != params["partnerId"] {
		return pathMismatch("partnerId", params["partnerId"], in.PartnerID)
	}
	out, err := s.deps.Billing.SetAgreement(r.Context(), p, in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listAgreements(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Billing.Agreements(r.Context(), p)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func period(r *http.Request) (string, error) {
	v := r.URL.Query().Get("period")
	if v == "" {
		return "", arm.InvalidRequest("period", "The query parameter 'period' (YYYY-MM) is required.")
	}
	return v, nil
}

func (s *Server) listInvoices(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	per, err := period(r)
	if err != nil {
		return err
	}
	out, err := s.deps.Billing.Invoices(r.Context(), p, per)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// getInvoice serves JSON, or ?format=csv|html.
func (s *Server) getInvoice(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	inv, err := s.deps.Billing.Invoice(r.Context(), p, params["number"])
	if err != nil {
		return err
	}
	switch strings.ToLower(r.URL.Query().Get("format")) {
	case "", "json":
		WriteJSON(w, http.StatusOK, inv)
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+inv.Number+`.csv"`)
		return billing.WriteInvoiceCSV(w, inv)
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		return billing.WriteInvoiceHTML(w, inv)
	default:
		return arm.InvalidRequest("format", "Unknown format '%s': want json, csv or html.", r.URL.Query().Get("format"))
	}
	return nil
}

func (s *Server) getPeriod(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Billing.Period(r.Context(), p, params["period"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) finalizePeriod(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Billing.Finalize(r.Context(), p, params["period"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createCreditNote(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in billing.CreditRequest
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	out, err := s.deps.Billing.CreateCreditNote(r.Context(), p, params["number"], in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, out)
	return nil
}

// reconciliation streams a partner's daily rated usage CSV.
func (s *Server) reconciliation(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	per, err := period(r)
	if err != nil {
		return err
	}
	partner := r.URL.Query().Get("partner")
	if partner == "" {
		partner = p.PartnerID
	}
	// Authorize before the first byte, so refusals keep the ARM envelope.
	lw := &lazyCSV{w: w, name: partner + "-" + per + "-daily-rated-usage.csv"}
	return s.deps.Billing.Reconciliation(r.Context(), p, partner, per, lw, nil)
}

// lazyCSV sets CSV headers on the first write.
type lazyCSV struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (l *lazyCSV) Write(b []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		l.w.Header().Set("Content-Disposition", `attachment; filename="`+l.name+`"`)
	}
	return l.w.Write(b)
}

func (s *Server) startExport(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	var in struct {
		Partner string `json:"partner"`
		Period  string `json:"period"`
	}
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	if in.Partner == "" {
		in.Partner = p.PartnerID
	}
	out, err := s.deps.Billing.StartExport(r.Context(), p, in.Partner, in.Period)
	if err != nil {
		return err
	}
	if s.deps.ExportKick != nil {
		s.deps.ExportKick()
	}
	WriteJSON(w, http.StatusAccepted, out)
	return nil
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Billing.Export(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getExportFile(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	lw := &lazyCSV{w: w, name: params["id"] + ".csv"}
	return s.deps.Billing.ExportFile(r.Context(), p, params["id"], lw)
}

func (s *Server) putPriceBook(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in billing.PriceBook
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	if in.Owner == "" {
		in.Owner = params["owner"]
	} else if in.Owner != params["owner"] {
		return pathMismatch("owner", params["owner"], in.Owner)
	}
	if in.Target == "" {
		in.Target = params["target"]
	} else if !strings.EqualFold(in.Target, params["target"]) {
		return pathMismatch("target", params["target"], in.Target)
	}
	out, err := s.deps.Billing.PutPriceBook(r.Context(), p, in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listPriceBooks(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Billing.PriceBooks(r.Context(), p, params["owner"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) deletePriceBook(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := s.deps.Billing.DeletePriceBook(r.Context(), p, params["owner"], params["target"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listStatements(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	per, err := period(r)
	if err != nil {
		return err
	}
	out, err := s.deps.Billing.Statements(r.Context(), p, params["owner"], per)
	if err != nil {
		return err
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		WriteJSON(w, http.StatusOK, map[string]any{"value": out})
		return nil
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="statements-`+params["owner"]+`-`+per+`.csv"`)
		return billing.WriteStatementsCSV(w, out)
	default:
		return arm.InvalidRequest("format", "Unknown format '%s': want json or csv.", f)
	}
}

// rateCard serves Microsoft.Commerce/RateCard as Azure's RateCardClient
// calls it.
func (s *Server) rateCard(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if _, e := arm.CheckAPIVersion(r, "NoApiVersion", apiCommerce); e != nil {
		return e
	}
	if _, ok := arm.CanonicalGUID(params["subscriptionId"]); !ok {
		return arm.Errorf(arm.Invalid, "SubscriptionIdMissingInRequest", "The subscription identifier '%s' in the path is not valid.", params["subscriptionId"])
	}
	q, err := billing.ParseRateCardFilter(arm.QueryParam(r.URL.Query(), "$filter"))
	if err != nil {
		return err
	}
	out, err := s.deps.Billing.RateCard(r.Context(), p, params["subscriptionId"], q)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}
