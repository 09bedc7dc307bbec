// Package httpapi serves stackbill over HTTP, and owns every route: the
// Azure-compatible ARM endpoints (Microsoft.AzureStack registrations,
// customerSubscriptions, and the stack's usage APIs), the native /v1 API
// (directory, billing, bridge, quarantine, audit, stack administration),
// /healthz, /metrics, the activation keys, and the portal's pages.
//
// Every route is listed once in routes.go with the roles that may call it;
// ServeHTTP is the middleware (request IDs, logs and metrics, limits,
// authentication) around a lookup in that table. Handlers are thin: decode,
// call a domain service, encode. Domain packages return *arm.Error values
// with a kind; this package alone maps kinds to HTTP statuses and the ARM
// envelope (errors.go), for the API and the portal alike.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// Authenticator checks bearer tokens and portal sessions.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (auth.Principal, error)
	Session(ctx context.Context, id string) (auth.Session, error)
}

// Pinger reports database health.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config holds the server's settings.
type Config struct {
	Role string // all, commerce or stack
	// PageSize is the default page size of ARM list operations.
	PageSize int
	// MaxBodyBytes bounds ARM and API request bodies; imports get 32 times
	// as much.
	MaxBodyBytes  int64
	DBDescription string
	// PagingKey seals skip and continuation tokens (see arm.Tokens).
	PagingKey []byte
	// MaxInflight bounds requests in flight (0: unlimited); RateLimit and
	// RateBurst bound each token's requests per second (0: unlimited).
	MaxInflight int
	RateLimit   float64
	RateBurst   int
	// MaxAnonInflight bounds unauthenticated requests in flight, apart
	// from MaxInflight, and AnonBodyTimeout how long one may take to send
	// its body (defaults 64 and 5s).
	MaxAnonInflight int
	AnonBodyTimeout time.Duration
	// AnonRate bounds each address's anonymous requests and failed
	// authentications per second (0: unlimited).
	AnonRate float64
	// PublicURL is the scheme and host clients reach stackbill at (nextLinks,
	// activation keys); TrustedProxies are the peers whose X-Forwarded-*
	// headers are believed when PublicURL is unset.
	PublicURL      string
	TrustedProxies []netip.Prefix
}

// Deps are the services the server exposes.
type Deps struct {
	Logger        *slog.Logger
	Registry      *prometheus.Registry
	Clock         *clock.Clock
	DB            Pinger
	Auth          Authenticator
	Directory     *directory.Service
	Registrations *registration.Service
	Tenancy       *tenancy.Service
	Meters        *meter.Catalogue
	Usage         *usage.Service
	Activation    *bridge.Issuer
	Signer        *bridge.Signer
	Ingestor      *bridge.Ingestor
	Forwarder     *bridge.Forwarder
	BillingMap    *meter.BillingMap
	Billing       *billing.Service
	// ExportKick wakes the export runner after a job is queued.
	ExportKick func()
	Audit      *audit.Log
	Refusals   *audit.Refusals
	Quarantine *quarantine.Service
	// Portal serves /portal/ (nil: no portal).
	Portal http.Handler
}

// Server is the HTTP handler.
type Server struct {
	cfg    Config
	deps   Deps
	routes []route
	reqID  atomic.Uint64
	tokens arm.Tokens
	limits *limits

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	metrics  http.Handler
	// zstd decodes compressed bridge batches; DecodeAll is safe for
	// concurrent use, and the memory cap bounds a batch's decoded size.
	zstd *zstd.Decoder
}

// New builds the server.
func New(cfg Config, deps Deps) *Server {
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxAnonInflight <= 0 {
		cfg.MaxAnonInflight = 64
	}
	if cfg.AnonBodyTimeout <= 0 {
		cfg.AnonBodyTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, deps: deps, tokens: arm.NewTokens(cfg.PagingKey), limits: newLimits(cfg.MaxInflight, cfg.RateLimit, cfg.RateBurst, cfg.MaxAnonInflight, cfg.AnonRate)}
	// The options are constant and valid; were they not, zstd bodies would
	// be refused as unsupported rather than the server failing to start.
	if dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxBridgeBody)); err == nil {
		s.zstd = dec
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stackbill_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "stackbill_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	deps.Registry.MustRegister(s.requests, s.duration)
	// One failing collector must not blank the rest of a scrape;
	// promhttp_metric_handler_errors_total counts the failure.
	s.metrics = promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{Registry: deps.Registry, ErrorHandling: promhttp.ContinueOnError})
	s.routes = s.buildRoutes()
	return s
}

// handlerFunc is a route handler; it returns an error for serveError.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error

type route struct {
	name    string
	method  string
	pattern arm.Pattern
	roles   []auth.Role // nil: any authenticated principal
	service string      // "commerce" or "stack": which --role serves it
	// wholeStamp refuses stack-operator tokens scoped to a delegated
	// provider: the route shows or changes the whole stamp.
	wholeStamp bool
	// anon routes answer without a credential (health, public keys, the
	// portal's sign-in); session routes take the portal's cookie;
	// unlimited ones bypass the request budgets (health checks stay
	// answerable when the server is saturated).
	anon, session, unlimited bool
	h                        handlerFunc
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines, flushing) through the wrapper.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	if code == http.StatusUnauthorized || code == http.StatusTooManyRequests {
		// A refused unauthenticated or over-budget request closes its
		// connection: net/http would otherwise read the unread body of a
		// slow client before answering.
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP authenticates, routes, authorizes by role, and records metrics.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := strconv.FormatUint(s.reqID.Add(1), 36) + "-" + strconv.FormatInt(start.UnixNano()%1e9, 36)
	rw.Header().Set("x-ms-request-id", id)
	if cid := r.Header.Get("x-ms-client-request-id"); cid != "" && len(cid) <= 128 {
		rw.Header().Set("x-ms-client-request-id", cid)
	}
	w := &statusWriter{ResponseWriter: rw}
	routeName := "unmatched"
	var principal auth.Principal
	defer func() {
		if v := recover(); v != nil {
			s.deps.Logger.Error("panic serving request", "request_id", id, "panic", fmt.Sprint(v), "path", r.URL.Path)
			if w.status == 0 {
				WriteError(w, arm.ErrInternal)
			}
		}
		status := w.status
		if status == 0 {
			status = http.StatusOK
		}
		elapsed := time.Since(start)
		s.requests.WithLabelValues(routeName, strconv.Itoa(status)).Inc()
		s.duration.WithLabelValues(routeName).Observe(elapsed.Seconds())
		level := slog.LevelDebug
		switch {
		case status >= 500:
			level = slog.LevelError
		case status >= 400:
			level = slog.LevelInfo
		}
		attrs := []any{"request_id", id, "method", r.Method, "route", routeName, "status", status,
			"duration_ms", float64(elapsed.Microseconds()) / 1000, "actor", principal.Actor()}
		if s.deps.Clock.Simulated() {
			// A simulated clock must be plain in every line that cites time.
			attrs = append(attrs, "simulated_time", s.deps.Clock.Now().Format(time.RFC3339))
		}
		s.deps.Logger.Log(r.Context(), level, "request", attrs...)
	}()

	r = r.WithContext(arm.WithBaseURL(r.Context(), s.baseURL(r)))
	if r.Header.Get("Authorization") == "" {
		// Without a credential the body gets a short deadline from the
		// start: net/http reads an unread body before it answers, so even
		// a refusal would otherwise wait for a slow client.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.AnonBodyTimeout))
	}
	segs, ok := arm.Segments(r)
	if !ok {
		WriteError(w, arm.InvalidRequest("path", "The request path is not validly percent-encoded."))
		return
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// net/url silently drops malformed pairs; a client that sent one
		// would get answers to a question it did not ask.
		WriteError(w, arm.InvalidRequest("query", "The query string is not validly percent-encoded: %v", err))
		return
	}
	if !pathAndQueryStorable(segs, query) {
		WriteError(w, arm.InvalidRequest("", "The path and query must be valid UTF-8 without NUL characters."))
		return
	}
	matched, params, methodMismatch := s.match(r.Method, segs)
	if matched == nil {
		// Who may not use the API learns nothing of its shape.
		if _, authed, _ := s.authenticate(r, &route{}); !authed {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill"`)
			WriteError(w, arm.ErrUnauthenticated)
			return
		}
		if methodMismatch {
			WriteError(w, arm.Errorf(arm.NotAllowed, "MethodNotAllowed", "The method %s is not allowed on %s.", r.Method, r.URL.Path))
			return
		}
		WriteError(w, arm.Errorf(arm.NotFound, "NotFound", "No route matches %s %s.", r.Method, r.URL.Path))
		return
	}
	routeName = matched.name
	if !s.serves(matched.service) {
		WriteError(w, arm.Errorf(arm.NotFound, "NotFound", "This instance runs the %s role and does not serve %s.", s.cfg.Role, matched.name))
		return
	}

	// Who is asking: a bearer token, or on portal pages a session cookie.
	// Looking either up is bounded work of its own, done before a request
	// may hold a slot or read its body.
	p, authed, aerr := s.authenticate(r, matched)
	if aerr != nil {
		if aerr != errUnauthenticated {
			s.deps.Logger.Error("authenticate", "request_id", id, "err", aerr)
		}
		if lerr, ok := aerr.(*arm.Error); ok {
			routeName = "limited"
			WriteError(w, lerr)
			return
		}
		if !matched.anon {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill", error="invalid_token"`)
			WriteError(w, arm.ErrUnauthenticated)
			return
		}
	}
	if authed {
		principal = p
		if s, ok := sessionOf(r, p); ok {
			r = r.WithContext(auth.WithSession(r.Context(), s))
		} else {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
	} else if !matched.anon {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill"`)
		WriteError(w, arm.ErrUnauthenticated)
		return
	}

	// Slots: an authenticated caller takes one of the server's; an
	// anonymous one one of a small budget of its own, with a short deadline
	// and a small cap on its body, so that slow or many anonymous requests
	// cannot starve anyone who signed in.
	if !matched.unlimited {
		var release func()
		var lerr *arm.Error
		if authed {
			release, lerr = s.limits.enter()
			if lerr == nil {
				if lerr = s.limits.allow(p.TokenID, time.Now()); lerr != nil {
					release()
				}
			}
		} else {
			release, lerr = s.limits.enterAnon(clientIP(r, s.cfg.TrustedProxies), time.Now())
			if lerr == nil {
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.AnonBodyTimeout))
				r.Body = http.MaxBytesReader(w, r.Body, anonBodyBytes)
			}
		}
		if lerr != nil {
			routeName = "limited"
			WriteError(w, lerr)
			return
		}
		defer release()
	}

	if (matched.roles != nil && !hasRole(matched.roles, p.Role)) || (matched.wholeStamp && delegated(p)) {
		e := arm.Forbidden(p.Actor(), matched.name, r.URL.Path)
		WriteError(w, e)
		s.refused(r, p, matched, e)
		return
	}
	if err := matched.h(w, r, p, params); err != nil {
		if e := s.serveError(w, id, err); e != nil {
			s.refused(r, p, matched, e)
		}
	}
}

// errUnauthenticated is a missing or invalid credential.
var errUnauthenticated = errors.New("unauthenticated")

// anonBodyBytes caps what an anonymous request may send: a sign-in form.
const anonBodyBytes = 64 << 10

// authenticate finds the caller: a bearer token, or (on routes that take
// it) a portal session cookie. It runs under its own small concurrency
// budget and per-address rate, so that a flood of made-up tokens costs a
// bounded number of lookups.
func (s *Server) authenticate(r *http.Request, rt *route) (auth.Principal, bool, error) {
	bearer, hasBearer := bearerToken(r)
	var cookie string
	if rt.session && !hasBearer {
		if c, err := r.Cookie(auth.SessionCookie); err == nil {
			cookie = c.Value
		}
	}
	if !hasBearer && cookie == "" {
		return auth.Principal{}, false, nil
	}
	release, lerr := s.limits.enterAuth(clientIP(r, s.cfg.TrustedProxies), time.Now())
	if lerr != nil {
		return auth.Principal{}, false, lerr
	}
	defer release()
	if hasBearer {
		p, err := s.deps.Auth.Authenticate(r.Context(), bearer)
		if errors.Is(err, auth.ErrInvalid) {
			s.limits.failed(clientIP(r, s.cfg.TrustedProxies), time.Now())
			return auth.Principal{}, false, errUnauthenticated
		}
		return p, err == nil, err
	}
	sess, err := s.deps.Auth.Session(r.Context(), cookie)
	if errors.Is(err, auth.ErrInvalid) {
		// An ended session is simply signed out: the portal asks again.
		return auth.Principal{}, false, nil
	}
	if err != nil {
		return auth.Principal{}, false, err
	}
	*r = *r.WithContext(context.WithValue(r.Context(), sessionCtxKey{}, sess))
	return sess.Principal, true, nil
}

type sessionCtxKey struct{}

// sessionOf is the portal session authenticate found, if it found one.
func sessionOf(r *http.Request, _ auth.Principal) (auth.Session, bool) {
	s, ok := r.Context().Value(sessionCtxKey{}).(auth.Session)
	return s, ok
}

// refused records a refused change in the audit log: who tried what, and
// why not. Reads are not recorded (a refused read changes nothing), nor are
// requests nobody signed in for.
func (s *Server) refused(r *http.Request, p auth.Principal, rt *route, e *arm.Error) {
	status := Status(e.Kind)
	if s.deps.Refusals == nil || p.TokenID == "" || status >= 500 || e.Kind == arm.Throttled {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return
	}
	scope := ""
	if p.Role == auth.RolePartner || p.Role == auth.RoleReseller {
		scope = p.PartnerID
	}
	if err := s.deps.Refusals.Record(r.Context(), audit.Refusal{Actor: p.Actor(), Scope: scope, Route: rt.name, Method: r.Method, Path: r.URL.Path,
		Status: status, Code: e.Code, Message: e.Message}); err != nil {
		s.deps.Logger.Error("audit a refused change", "route", rt.name, "err", err)
	}
}

// match finds the route of a request.
func (s *Server) match(method string, segs []string) (*route, map[string]string, bool) {
	methodMismatch := false
	for i := range s.routes {
		rt := &s.routes[i]
		pm, ok := rt.pattern.Match(segs)
		if !ok {
			continue
		}
		if rt.method != "*" && rt.method != method {
			methodMismatch = true
			continue
		}
		return rt, pm, false
	}
	return nil, nil, methodMismatch
}

// pathAndQueryStorable reports whether every path segment and query value
// is valid UTF-8 without NUL: PostgreSQL refuses NUL in TEXT, and a value
// one engine cannot take must be a 400, not a 500.
func pathAndQueryStorable(segs []string, q url.Values) bool {
	for _, seg := range segs {
		if !storable(seg) {
			return false
		}
	}
	for k, vs := range q {
		if !storable(k) {
			return false
		}
		for _, v := range vs {
			if !storable(v) {
				return false
			}
		}
	}
	return true
}

func storable(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// baseURL is the scheme and host clients reach this server at: the
// configured public URL, else what a trusted proxy says, else the request's
// own Host. X-Forwarded-* from anyone else is ignored: it would set the
// host of nextLinks and of the usage endpoint signed into activation keys.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if fromTrustedProxy(r, s.cfg.TrustedProxies) {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" && !strings.ContainsAny(h, "/ \\@") {
			host = h
		}
	}
	return scheme + "://" + host
}

func peerIP(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func fromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	ip, ok := peerIP(r)
	if !ok {
		return false
	}
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the address anonymous work is budgeted by: the peer, or the
// last address a trusted proxy appended to X-Forwarded-For.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	ip, ok := peerIP(r)
	if !ok {
		return r.RemoteAddr
	}
	if fromTrustedProxy(r, trusted) {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a.Unmap().String()
			}
		}
	}
	return ip.String()
}

func (s *Server) serves(service string) bool {
	return service == "" || s.cfg.Role == "" || s.cfg.Role == "all" || s.cfg.Role == service
}

// delegated reports a stack-operator token scoped to one delegated
// provider's tenants rather than the whole stamp.
func delegated(p auth.Principal) bool {
	return p.Role == auth.RoleStackOperator && p.SubscriptionID != ""
}

func hasRole(roles []auth.Role, r auth.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// serveError is the one place errors become responses. It returns the
// error it wrote when the caller's request was refused (a 4xx), so that
// the refusal can be recorded.
func (s *Server) serveError(w http.ResponseWriter, requestID string, err error) *arm.Error {
	if errors.Is(err, context.Canceled) {
		return nil // the client went away; nobody is listening
	}
	e, fault := Classify(err)
	switch {
	case fault:
		s.deps.Logger.Error("request failed", "request_id", requestID, "err", err)
	case e.Kind == arm.Full:
		s.deps.Logger.Error("storage full: refusing writes", "request_id", requestID, "err", err)
	}
	WriteError(w, e)
	if Status(e.Kind) >= 500 {
		return nil
	}
	return e
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	s.serveHealth(w, r)
	return nil
}

// activationKeys serves commerce's public keys: stacks fetch them to verify
// an activation key before they hold any credential, so this is open.
func (s *Server) activationKeys(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	keys, err := s.deps.Signer.JWKS(r.Context())
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, keys)
	return nil
}

// metricsHandler serves Prometheus metrics to the operator and the stamp's
// own stack operator (a delegated provider's token sees none of it).
func (s *Server) metricsHandler(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	if delegated(p) {
		return arm.Forbidden(p.Actor(), "metrics/read", "/metrics")
	}
	s.metrics.ServeHTTP(w, r)
	return nil
}

// portalHandler serves the portal, which authorizes each page with the
// principal the server found (or sends the browser to sign in).
func (s *Server) portalHandler(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	if s.deps.Portal == nil {
		return arm.Errorf(arm.NotFound, "NotFound", "This instance serves no portal.")
	}
	if r.URL.Path == "/" || r.URL.Path == "/portal" {
		http.Redirect(w, r, "/portal/", http.StatusFound)
		return nil
	}
	s.deps.Portal.ServeHTTP(w, r)
	return nil
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, code := "ok", http.StatusOK
	if err := s.deps.DB.Ping(ctx); err != nil {
		status, code = "database unavailable", http.StatusServiceUnavailable
	}
	WriteJSON(w, code, map[string]any{
		"status":         status,
		"time":           s.deps.Clock.Now().Format(time.RFC3339Nano),
		"simulatedClock": s.deps.Clock.Simulated(),
		"clockRate":      s.deps.Clock.Rate(),
		"role":           s.cfg.Role,
		"database":       s.cfg.DBDescription,
	})
}
