// Package httpapi serves stackbill over HTTP, and owns every route: the
// Azure-compatible ARM endpoints (Microsoft.AzureStack registrations,
// customerSubscriptions, and the stack's usage APIs), the native /v1 API
// (directory, billing, bridge, quarantine, audit, stack administration),
// /healthz, /metrics, the activation keys, and the portal's pages.
//
// Every route is listed once in routes.go with the audience that may call it;
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
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/ingest"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/notify"
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
	Ingestor      *ingest.Ingestor
	Ledger        *ledger.Ledger
	Forwarder     *bridge.Forwarder
	BillingMap    *meter.BillingMap
	Billing       *billing.Service
	// ExportKick wakes the export runner after a job is queued.
	ExportKick func()
	Audit      *audit.Log
	Refusals   *audit.Refusals
	Quarantine *quarantine.Service
	Notify     *notify.Service
	Budgets    *budget.Service
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
	// bridgeSlots bounds the bridge batches decoded and ingested at once.
	// A batch costs memory in proportion to its records (its decompressed
	// body, the decoded records, the mapped copy and the log payload): a
	// hundred stamps catching up at once held 7.7 GB in one commerce
	// process before this bound (docs/scale.md). A batch past the bound
	// waits for a slot, so stamps slow down rather than fail.
	bridgeSlots chan struct{}
	// authWarn paces warnings of refused credentials: an attacker, or a
	// misconfigured client, must not flood the log and push out what an
	// operator needs (the tokens serve prints); authQuiet counts those
	// logged at debug instead, reported with the next warning.
	authWarn  *rate.Limiter
	authQuiet atomic.Int64
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
	s := &Server{cfg: cfg, deps: deps, tokens: arm.NewTokens(cfg.PagingKey), limits: newLimits(cfg.MaxInflight, cfg.RateLimit, cfg.RateBurst, cfg.MaxAnonInflight, cfg.AnonRate),
		authWarn: rate.NewLimiter(2, 5), bridgeSlots: make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))}
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
	who     auth.Audience // who may call it (auth.Anyone: any principal)
	service string        // "commerce" or "stack": which --role serves it
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
	q := s.begin(rw, r)
	defer s.finish(q)
	rt, params, e := s.lookup(q)
	if e == nil {
		e = s.identify(q, rt)
	}
	if e != nil {
		WriteError(q.w, e)
		return
	}
	release, e := s.admit(q, rt)
	if e != nil {
		q.route = "limited"
		WriteError(q.w, e)
		return
	}
	defer release()
	if e := s.authorize(q, rt); e != nil {
		WriteError(q.w, e)
		s.refused(q.r, q.p, rt, e)
		return
	}
	if err := rt.h(q.w, q.r, q.p, params); err != nil {
		if e := s.serveError(q.w, q.id, err); e != nil {
			s.refused(q.r, q.p, rt, e)
		}
	}
}

// exchange is one request as the middleware carries it from stage to stage.
type exchange struct {
	w      *statusWriter
	r      *http.Request
	id     string
	start  time.Time
	route  string // the matched route's name, for logs and metrics
	p      auth.Principal
	authed bool
}

// begin names the request (x-ms-request-id, echoing the client's ID) and
// resolves the base URL nextLinks are built on. A request without a
// credential gets a short deadline on its body from the start: net/http
// reads an unread body before it answers, so even a refusal would otherwise
// wait for a slow client.
func (s *Server) begin(rw http.ResponseWriter, r *http.Request) *exchange {
	q := &exchange{w: &statusWriter{ResponseWriter: rw}, start: time.Now(), route: "unmatched"}
	q.id = strconv.FormatUint(s.reqID.Add(1), 36) + "-" + strconv.FormatInt(q.start.UnixNano()%1e9, 36)
	rw.Header().Set("x-ms-request-id", q.id)
	if cid := r.Header.Get("x-ms-client-request-id"); cid != "" && len(cid) <= 128 {
		rw.Header().Set("x-ms-client-request-id", cid)
	}
	q.r = r.WithContext(arm.WithBaseURL(r.Context(), s.baseURL(r)))
	if r.Header.Get("Authorization") == "" {
		_ = http.NewResponseController(q.w).SetReadDeadline(time.Now().Add(s.cfg.AnonBodyTimeout))
	}
	return q
}

// finish turns a panic into a 500, and logs and counts the request.
func (s *Server) finish(q *exchange) {
	if v := recover(); v != nil {
		s.deps.Logger.Error("panic serving request", "request_id", q.id, "panic", fmt.Sprint(v), "path", q.r.URL.Path)
		if q.w.status == 0 {
			WriteError(q.w, arm.ErrInternal)
		}
	}
	status := q.w.status
	if status == 0 {
		status = http.StatusOK
	}
	elapsed := time.Since(q.start)
	s.requests.WithLabelValues(q.route, strconv.Itoa(status)).Inc()
	s.duration.WithLabelValues(q.route).Observe(elapsed.Seconds())
	// Successes and a client's own mistakes (4xx) are debug; a refused
	// credential is a warning, at most a few a second; a server error is
	// an error.
	level := slog.LevelDebug
	attrs := []any{"request_id", q.id, "method", q.r.Method, "route", q.route, "status", status,
		"duration_ms", float64(elapsed.Microseconds()) / 1000, "actor", q.p.Actor()}
	switch {
	case status >= 500:
		level = slog.LevelError
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		if s.authWarn.Allow() {
			level = slog.LevelWarn
			if n := s.authQuiet.Swap(0); n > 0 {
				attrs = append(attrs, "refusals_logged_at_debug_since_last", n)
			}
		} else {
			s.authQuiet.Add(1)
		}
	}
	if s.deps.Clock.Simulated() {
		// A simulated clock must be plain in every line that cites time.
		attrs = append(attrs, "simulated_time", s.deps.Clock.Now().Format(time.RFC3339))
	}
	s.deps.Logger.Log(q.r.Context(), level, "request", attrs...)
}

// lookup finds the request's route in the table. A caller without a valid
// credential learns nothing of the API's shape: what matches no route is a
// 401 to it, and a 404 or 405 only to who signed in.
func (s *Server) lookup(q *exchange) (*route, map[string]string, *arm.Error) {
	segs, ok := arm.Segments(q.r)
	if !ok {
		return nil, nil, arm.InvalidRequest("path", "The request path is not validly percent-encoded.")
	}
	query, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		// net/url silently drops malformed pairs; a client that sent one
		// would get answers to a question it did not ask.
		return nil, nil, arm.InvalidRequest("query", "The query string is not validly percent-encoded: %v", err)
	}
	if !pathAndQueryStorable(segs, query) {
		return nil, nil, arm.InvalidRequest("", "The path and query must be valid UTF-8 without NUL characters.")
	}
	rt, params, methodMismatch := s.match(q.r.Method, segs)
	switch {
	case rt == nil:
		if _, authed, _ := s.authenticate(q.r, &route{}); !authed {
			q.w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill"`)
			return nil, nil, arm.ErrUnauthenticated
		}
		if methodMismatch {
			return nil, nil, arm.Errorf(arm.NotAllowed, "MethodNotAllowed", "The method %s is not allowed on %s.", q.r.Method, q.r.URL.Path)
		}
		return nil, nil, arm.Errorf(arm.NotFound, "NotFound", "No route matches %s %s.", q.r.Method, q.r.URL.Path)
	case !s.serves(rt.service):
		q.route = rt.name
		return nil, nil, arm.Errorf(arm.NotFound, "NotFound", "This instance runs the %s role and does not serve %s.", s.cfg.Role, rt.name)
	}
	q.route = rt.name
	return rt, params, nil
}

// identify finds who is asking: a bearer token, or on portal pages a
// session cookie. Looking either up is bounded work of its own, done before
// a request may hold a slot or read its body.
func (s *Server) identify(q *exchange, rt *route) *arm.Error {
	p, authed, err := s.authenticate(q.r, rt)
	if err != nil {
		if err != errUnauthenticated {
			s.deps.Logger.Error("authenticate", "request_id", q.id, "err", err)
		}
		if e, ok := err.(*arm.Error); ok {
			q.route = "limited"
			return e
		}
		if !rt.anon {
			q.w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill", error="invalid_token"`)
			return arm.ErrUnauthenticated
		}
	}
	switch {
	case authed:
		q.p, q.authed = p, true
		if sess, ok := sessionOf(q.r, p); ok {
			// begin gave this cookie-only request the anonymous read
			// deadline. Left in place, it would fire during a long page
			// (net/http's background read then cancels the request's
			// context), so a signed-in partner's slow invoice became a 500.
			_ = http.NewResponseController(q.w).SetReadDeadline(time.Time{})
			q.r = q.r.WithContext(auth.WithSession(q.r.Context(), sess))
		} else {
			q.r = q.r.WithContext(auth.WithPrincipal(q.r.Context(), p))
		}
	case !rt.anon:
		q.w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill"`)
		return arm.ErrUnauthenticated
	}
	return nil
}

// admit takes a slot: an authenticated caller one of the server's (and a
// token from its own rate), an anonymous one one of a small budget of its
// own, with a short deadline and a small cap on its body, so that slow or
// many anonymous requests cannot starve anyone who signed in.
func (s *Server) admit(q *exchange, rt *route) (release func(), e *arm.Error) {
	if rt.unlimited {
		return func() {}, nil
	}
	if q.authed {
		release, e = s.limits.enter()
		if e == nil {
			if e = s.limits.allow(q.p.TokenID, time.Now()); e != nil {
				release()
			}
		}
		return release, e
	}
	release, e = s.limits.enterAnon(clientIP(q.r, s.cfg.TrustedProxies), time.Now())
	if e == nil {
		rc := http.NewResponseController(q.w)
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.AnonBodyTimeout))
		// The deadline bounds how long the body may take to arrive, not the
		// work done with it: once the body is in (or there is none), it is
		// lifted, because net/http's background read would otherwise hit it
		// and cancel the request mid-work (a sign-in waiting on a busy
		// database became a 401). The work stays bounded by the anonymous
		// slots this request holds.
		if q.r.Body == nil || q.r.Body == http.NoBody {
			_ = rc.SetReadDeadline(time.Time{})
		} else {
			q.r.Body = &liftOnEOF{ReadCloser: q.r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		}
		q.r.Body = http.MaxBytesReader(q.w, q.r.Body, anonBodyBytes)
	}
	return release, e
}

// liftOnEOF calls lift once its body has been read to the end.
type liftOnEOF struct {
	io.ReadCloser
	lift func()
	done bool
}

func (b *liftOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.lift()
	}
	return n, err
}

// authorize checks the route's audience; routes over the whole stamp refuse a
// delegated provider's stack operator.
func (s *Server) authorize(q *exchange, rt *route) *arm.Error {
	if !rt.who.Admits(q.p.Role) || (rt.wholeStamp && delegated(q.p)) {
		return arm.Forbidden(q.p.Actor(), rt.name, q.r.URL.Path)
	}
	return nil
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
	if err := s.deps.Refusals.Record(r.Context(), audit.Refusal{Actor: p.Actor(), Scope: p.AuditScope(), Route: rt.name, Method: r.Method, Path: r.URL.Path,
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
