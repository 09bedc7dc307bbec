// Package portal is stackbill's web portal: server-rendered HTML pages over
// the same services, and with the same authorization, as the API.
//
// Why server-rendered: every page is a view of data the services already
// scope by principal, so rendering on the server means the browser only ever
// receives what the signed-in token may see, there is no second API surface
// to secure, and `go build` alone produces the whole portal (templates, CSS,
// a little JavaScript and the vendored Chart.js are embedded). JavaScript only
// enhances: charts draw from JSON embedded in the page, and each chart has a
// table beside it that works without scripts.
//
// Sign-in takes a bearer token (the same tokens the API accepts) and starts
// a server-side session (auth.StartSession): the HttpOnly, SameSite=Strict
// cookie holds a random session ID, never the token, and is Secure whenever
// the public URL is https. The server looks the session up before the
// portal runs (the same place it authenticates API tokens, inside the small
// budget for unauthenticated work), and it ends with its token, so revoking
// or expiring a token ends its portal sessions at once. Every form that
// changes state, sign-in and sign-out included, carries a CSRF field.
package portal

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/httpapi"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are the services the portal reads and acts through.
type Deps struct {
	// Role is the process's role: all, commerce or stack. Pages of a service
	// the process does not run are not offered.
	Role          string
	Clock         *clock.Clock
	Logger        *slog.Logger
	Auth          *auth.Service
	Directory     *directory.Service
	Registrations *registration.Service
	Tenancy       *tenancy.Service
	Meters        *meter.Catalogue
	BillingMap    *meter.BillingMap
	Usage         *usage.Service
	Forwarder     *bridge.Forwarder
	Ledger        *ledger.Ledger
	Billing       *billing.Service
	Quarantine    *quarantine.Service
	Notify        *notify.Service
	Budgets       *budget.Service
	// Refusals records refused changes in the audit log, as the API does.
	Refusals *audit.Refusals
	// SecureCookies marks cookies Secure: the public URL is https.
	SecureCookies bool
}

// Portal serves /portal/.
type Portal struct {
	d    Deps
	tmpl *template.Template
	mux  *http.ServeMux
}

// loginCookie carries the sign-in form's CSRF secret (double submit): a
// cross-site page cannot read it, so it cannot sign a browser in under the
// attacker's token.
const loginCookie = "stackbill_login"

// pageSize is the rows per page of the portal's long lists.
const pageSize = 50

// New builds the portal.
func New(d Deps) (*Portal, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	t, err := template.New("portal").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("portal templates: %w", err)
	}
	p := &Portal{d: d, tmpl: t, mux: http.NewServeMux()}
	static, _ := fs.Sub(staticFS, "static")
	p.mux.Handle("GET /portal/static/", http.StripPrefix("/portal/static/", cacheable(http.FileServerFS(static))))
	p.mux.HandleFunc("GET /portal/login", p.loginPage)
	p.mux.HandleFunc("POST /portal/login", p.login)
	p.mux.HandleFunc("POST /portal/logout", p.logout)
	p.routes()
	return p, nil
}

func cacheable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the portal with headers that keep pages private and
// un-frameable, and scripts local.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	p.mux.ServeHTTP(w, r)
}

// session is a signed-in request.
type session struct {
	P    auth.Principal
	CSRF string
}

// session is the request's portal session, which the server looked up
// before the portal ran.
func (p *Portal) session(r *http.Request) (*session, bool) {
	s, ok := auth.SessionFrom(r.Context())
	if !ok {
		return nil, false
	}
	return &session{P: s.Principal, CSRF: s.CSRF}, true
}

// handler is a page that needs a signed-in principal of its audience.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

func (p *Portal) page(pattern string, who auth.Audience, h handler) {
	p.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s, ok := p.session(r)
		if !ok {
			http.Redirect(w, r, "/portal/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if !who.Admits(s.P.Role) {
			p.fail(w, r, s, arm.Errorf(arm.Denied, "AuthorizationFailed", "A %s token cannot open this page.", s.P.Role))
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
				p.fail(w, r, s, arm.Errorf(arm.Denied, "InvalidCsrfToken", "The form expired or did not come from this portal. Reload the page and try again."))
				return
			}
			for _, vs := range r.PostForm {
				for _, v := range vs {
					if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
						p.fail(w, r, s, arm.InvalidRequest("", "The form's fields must be valid UTF-8 without NUL characters."))
						return
					}
				}
			}
		}
		if err := h(w, r, s); err != nil {
			p.fail(w, r, s, err)
		}
	})
}

// viewError is an error as a page shows it.
type viewError struct {
	Status           int
	Code, Message    string
	Target, Guidance string
}

func toViewError(err error) viewError {
	e, _ := httpapi.Classify(err)
	ve := viewError{Status: httpapi.Status(e.Kind), Code: e.Code, Message: e.Message, Target: e.Target, Guidance: registration.Guidance(e.Code)}
	if ve.Status >= 500 && e == arm.ErrInternal {
		ve.Message = "Something went wrong on the server; it has been logged."
	}
	return ve
}

func (p *Portal) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	ve := toViewError(err)
	if ve.Status >= 500 {
		p.d.Logger.Error("portal page failed", "path", r.URL.Path, "err", err)
	}
	if s != nil && r.Method == http.MethodPost && ve.Status >= 400 && ve.Status < 500 && p.d.Refusals != nil {
		if err := p.d.Refusals.Record(r.Context(), audit.Refusal{Actor: s.P.Actor(), Scope: s.P.AuditScope(), Route: "Portal " + r.URL.Path, Method: r.Method, Path: r.URL.Path,
			Status: ve.Status, Code: ve.Code, Message: ve.Message}); err != nil {
			p.d.Logger.Error("audit a refused change", "path", r.URL.Path, "err", err)
		}
	}
	w.WriteHeader(ve.Status)
	p.render(w, r, s, "error", "Error", ve)
}

// view is what every page template receives.
type view struct {
	Title     string
	S         *session
	Nav       []navItem
	Now       time.Time
	Simulated bool
	Rate      int64
	Path      string
	// Alerts is how many events the principal may see happened in the
	// last week: the bell's count (-1: no bell for this principal).
	Alerts int
	Body   any
}

type navItem struct {
	Href, Label string
	Active      bool
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, s *session, name, title string, body any) {
	v := view{Title: title, S: s, Now: p.d.Clock.Now(), Simulated: p.d.Clock.Simulated(), Rate: p.d.Clock.Rate(), Path: r.URL.Path, Body: body, Alerts: -1}
	if s != nil {
		v.Nav = p.nav(s.P, r.URL.Path)
		if p.commerce() && p.d.Notify != nil && auth.Commerce.Admits(s.P.Role) {
			n, err := p.d.Notify.Recent(r.Context(), s.P, v.Now.Add(-alertsWindow), 100)
			if err != nil {
				p.d.Logger.Error("portal: count alerts", "err", err)
			} else {
				v.Alerts = n
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := p.tmpl.ExecuteTemplate(w, name, v); err != nil {
		p.d.Logger.Error("portal render", "template", name, "err", err)
	}
}

func (p *Portal) commerce() bool {
	return p.d.Role == "all" || p.d.Role == "commerce" || p.d.Role == ""
}
func (p *Portal) stack() bool { return p.d.Role == "all" || p.d.Role == "stack" || p.d.Role == "" }

// nav lists the pages a principal may open, in the order of its work.
func (p *Portal) nav(pr auth.Principal, path string) []navItem {
	var items []navItem
	add := func(href, label string) {
		items = append(items, navItem{Href: href, Label: label, Active: path == href || strings.HasPrefix(path, href+"/")})
	}
	switch pr.Role {
	case auth.RoleOperator:
		if p.commerce() {
			add("/portal/overview", "Overview")
			add("/portal/partners", "Partners")
			add("/portal/customers", "Customers")
			add("/portal/registrations", "Registrations")
			add("/portal/pricing", "Price lists")
			add("/portal/ingestion", "Ingestion")
			add("/portal/usage", "Usage")
			add("/portal/invoices", "Invoices")
			add("/portal/budgets", "Budgets")
			add("/portal/alerts", "Alerts")
			add("/portal/webhooks", "Webhooks")
		}
		add("/portal/quarantine", "Quarantine")
		if p.stack() {
			add("/portal/stack/overview", "Stack overview")
			add("/portal/stack/tenants", "Stack tenants")
			add("/portal/stack/meters", "Meters")
			add("/portal/stack/usage", "Usage explorer")
			add("/portal/stack/bridge", "Bridge")
		}
	case auth.RolePartner, auth.RoleReseller:
		if p.commerce() {
			add("/portal/overview", "Overview")
			add("/portal/customers", "Customers")
			if pr.Role == auth.RolePartner {
				// Registrations live on a partner's own subscriptions; a
				// reseller has none, so the page would always be empty.
				add("/portal/registrations", "Registrations")
			}
			add("/portal/usage", "Usage")
			if pr.Role == auth.RolePartner {
				add("/portal/invoices", "Invoices")
			}
			add("/portal/statements", "Price books & statements")
			if pr.Role == auth.RolePartner {
				// A price list is the partner's cost; resellers see prices
				// through their provider's price book only.
				add("/portal/pricing", "Price lists")
			}
			add("/portal/budgets", "Budgets")
			add("/portal/alerts", "Alerts")
			add("/portal/webhooks", "Webhooks")
		}
	case auth.RoleStackOperator:
		if p.stack() {
			add("/portal/stack/overview", "Overview")
			add("/portal/stack/tenants", "Tenants")
			add("/portal/stack/meters", "Meters")
			add("/portal/stack/usage", "Usage explorer")
			add("/portal/stack/bridge", "Bridge")
			add("/portal/quarantine", "Quarantine")
		}
	case auth.RoleTenant:
		if p.stack() {
			add("/portal/my/overview", "Overview")
			add("/portal/my/usage", "My usage")
		}
	}
	return items
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request, s *session) error {
	if r.URL.Path != "/portal/" {
		return arm.Errorf(arm.NotFound, "NotFound", "There is no page at %s.", r.URL.Path)
	}
	items := p.nav(s.P, "")
	if len(items) == 0 {
		p.render(w, r, s, "nopages", "Nothing to show", nil)
		return nil
	}
	http.Redirect(w, r, items[0].Href, http.StatusSeeOther)
	return nil
}

func (p *Portal) loginPage(w http.ResponseWriter, r *http.Request) {
	p.renderLogin(w, r, http.StatusOK, safeNext(r.URL.Query().Get("next")), "")
}

// renderLogin shows the sign-in form with a fresh CSRF secret in a cookie
// and in the form.
func (p *Portal) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, message string) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	secret := hex.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: secret, Path: "/portal/", MaxAge: 3600, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: p.d.SecureCookies})
	if status != http.StatusOK {
		w.WriteHeader(status)
	}
	p.render(w, r, nil, "login", "Sign in", map[string]string{"Next": next, "Error": message, "CSRF": secret})
}

// safeNext keeps post-login redirects inside the portal.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/portal/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/portal/"
	}
	return next
}

func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	next := safeNext(r.PostFormValue("next"))
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(c.Value)) != 1 {
		p.renderLogin(w, r, http.StatusForbidden, next, "The sign-in form expired or did not come from this portal. Try again.")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	id, _, err := p.d.Auth.StartSession(r.Context(), token)
	if err != nil {
		if !errors.Is(err, auth.ErrInvalid) {
			// Not a verdict on the token: saying it was invalid would send
			// the partner off to make a new one.
			p.d.Logger.Error("portal sign-in", "err", err)
			p.renderLogin(w, r, http.StatusServiceUnavailable, next, "Sign-in is unavailable just now. Try again in a moment.")
			return
		}
		p.renderLogin(w, r, http.StatusUnauthorized, next, "That token is not valid, has expired or was revoked. Create one with: stackbill token create --role …")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/portal/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: p.d.SecureCookies})
	http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: id, Path: "/portal/", MaxAge: int(auth.SessionTTL.Seconds()), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: p.d.SecureCookies})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	s, ok := p.session(r)
	if ok {
		if err := r.ParseForm(); err != nil || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
			p.fail(w, r, s, arm.Errorf(arm.Denied, "InvalidCsrfToken", "The form expired or did not come from this portal. Reload the page and try again."))
			return
		}
		if c, err := r.Cookie(auth.SessionCookie); err == nil {
			if err := p.d.Auth.EndSession(r.Context(), c.Value); err != nil {
				p.fail(w, r, s, err)
				return
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: "", Path: "/portal/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: p.d.SecureCookies})
	http.Redirect(w, r, "/portal/login", http.StatusSeeOther)
}

// pager slices a list for one page of a paginated table.
type pager struct {
	Page, Pages, Total int
	Prev, Next         string
}

func paginate[T any](r *http.Request, items []T) ([]T, pager) {
	n, _ := strconv.Atoi(r.URL.Query().Get("page"))
	pages := max(1, (len(items)+pageSize-1)/pageSize)
	n = min(max(n, 1), pages)
	pg := pager{Page: n, Pages: pages, Total: len(items)}
	link := func(k int) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(k))
		return r.URL.Path + "?" + q.Encode()
	}
	if n > 1 {
		pg.Prev = link(n - 1)
	}
	if n < pages {
		pg.Next = link(n + 1)
	}
	return items[(n-1)*pageSize : min(n*pageSize, len(items))], pg
}

// matches is the portal's list filter: a case-insensitive substring of any
// of the fields.
func matches(q string, fields ...string) bool {
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

// dateRange reads from/to (YYYY-MM-DD, to inclusive) with a default span
// ending today.
type dateRange struct {
	From, To time.Time // [From, To)
}

func (d dateRange) FromText() string { return d.From.Format("2006-01-02") }
func (d dateRange) ToText() string   { return d.To.Add(-24 * time.Hour).Format("2006-01-02") }

func parseRange(r *http.Request, now time.Time, defaultDays int) (dateRange, error) {
	today := clock.DayStart(now)
	d := dateRange{From: today.Add(-time.Duration(defaultDays-1) * 24 * time.Hour), To: today.Add(24 * time.Hour)}
	q := r.URL.Query()
	if v := q.Get("from"); v != "" {
		t, err := time.Parse("2006-01-02", v)
		if err != nil {
			return d, arm.InvalidRequest("from", "'%s' is not a date (YYYY-MM-DD).", v)
		}
		d.From = t.UTC()
	}
	if v := q.Get("to"); v != "" {
		t, err := time.Parse("2006-01-02", v)
		if err != nil {
			return d, arm.InvalidRequest("to", "'%s' is not a date (YYYY-MM-DD).", v)
		}
		d.To = t.UTC().Add(24 * time.Hour)
	}
	switch {
	case !d.To.After(d.From):
		return d, arm.InvalidRequest("to", "The end date must not be before the start date.")
	case d.To.Sub(d.From) > 366*24*time.Hour:
		return d, arm.InvalidRequest("from", "Choose a range of at most a year.")
	}
	return d, nil
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"tsp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"day":   func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"money": func(q money.Quantity, cur string) string { return billing.FormatAmountGrouped(q, cur) + " " + cur },
	"qty":   func(q money.Quantity) string { return q.String() },
	"short": func(s string) string {
		if len(s) > 13 {
			return s[:8] + "…"
		}
		return s
	},
	"dur":       func(sec float64) string { return (time.Duration(sec) * time.Second).String() },
	"pathesc":   url.PathEscape,
	"lower":     strings.ToLower,
	"list":      func(s ...string) []string { return s },
	"hasPrefix": strings.HasPrefix,
	// usagehref links a line to the daily usage behind it.
	"usagehref": func(sub, meterID string, from, to time.Time) string { return usageHref(sub, meterID, from, to) },
	"periodusage": func(sub, meterID string, local bool, period string) string {
		start, err := clock.ParsePeriod(period)
		if err != nil {
			return ""
		}
		if local {
			meterID = "local:" + meterID
		}
		return usageHref(sub, meterID, start, clock.NextMonth(start).Add(-24*time.Hour))
	},
}

// ctxNow is the process's clock, for handlers.
func (p *Portal) now(context.Context) time.Time { return p.d.Clock.Now() }
