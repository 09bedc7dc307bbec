// Package httpapi serves stackbill over HTTP: the Azure-compatible ARM
// endpoints (Microsoft.AzureStack registrations and customerSubscriptions) and
// the native /v1 API for the partner directory and operator actions.
//
// Every route is listed once in routes.go with the roles that may call it.
// Handlers are thin: decode, call a domain service, encode. Errors are
// translated in exactly one place (serveError): *arm.Error values are written
// in the ARM envelope, anything else is logged and answered as a generic 500.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// Authenticator checks bearer tokens.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (auth.Principal, error)
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
	s := &Server{cfg: cfg, deps: deps, tokens: arm.NewTokens(cfg.PagingKey), limits: newLimits(cfg.MaxInflight, cfg.RateLimit, cfg.RateBurst)}
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
	h          handlerFunc
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
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
				arm.WriteError(w, arm.ErrInternal)
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

	if r.URL.Path != "/healthz" {
		// Health checks stay answerable when the server is saturated.
		release, lerr := s.limits.enter()
		if lerr != nil {
			routeName = "limited"
			arm.WriteError(w, lerr)
			return
		}
		defer release()
	}
	if s.deps.Portal != nil {
		switch {
		case r.URL.Path == "/" || r.URL.Path == "/portal":
			routeName = "portal"
			http.Redirect(w, r, "/portal/", http.StatusFound)
			return
		case strings.HasPrefix(r.URL.Path, "/portal/"):
			// The portal authenticates by its own session cookie and applies
			// the same services' scope; see package portal.
			routeName = "portal"
			s.deps.Portal.ServeHTTP(w, r)
			return
		}
	}
	switch r.URL.Path {
	case "/healthz":
		routeName = "healthz"
		s.serveHealth(w, r)
		return
	case "/v1/activation/keys":
		// Commerce's public keys: stacks fetch them to verify an activation
		// key before they hold any credential, so this is unauthenticated.
		routeName = "Activation_Keys"
		if !s.serves("commerce") {
			arm.WriteError(w, arm.Errorf(http.StatusNotFound, "NotFound", "This instance does not run commerce."))
			return
		}
		keys, err := s.deps.Signer.JWKS(r.Context())
		if err != nil {
			s.serveError(w, id, err)
			return
		}
		arm.WriteJSON(w, http.StatusOK, keys)
		return
	}

	bearer, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill"`)
		arm.WriteError(w, arm.ErrUnauthenticated)
		return
	}
	p, err := s.deps.Auth.Authenticate(r.Context(), bearer)
	if err != nil {
		if !errors.Is(err, auth.ErrInvalid) {
			s.deps.Logger.Error("authenticate", "request_id", id, "err", err)
			arm.WriteError(w, arm.ErrInternal)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="stackbill", error="invalid_token"`)
		arm.WriteError(w, arm.ErrUnauthenticated)
		return
	}
	principal = p
	if lerr := s.limits.allow(p.TokenID, time.Now()); lerr != nil {
		routeName = "limited"
		arm.WriteError(w, lerr)
		return
	}
	r = r.WithContext(auth.WithPrincipal(r.Context(), p))

	if r.URL.Path == "/metrics" {
		routeName = "metrics"
		if (p.Role != auth.RoleOperator && p.Role != auth.RoleStackOperator) || delegated(p) {
			arm.WriteError(w, arm.Forbidden(p.Actor(), "metrics/read", "/metrics"))
			return
		}
		s.metrics.ServeHTTP(w, r)
		return
	}

	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		// net/url silently drops malformed pairs; a client that sent one
		// would get answers to a question it did not ask.
		arm.WriteError(w, arm.InvalidRequest("query", "The query string is not validly percent-encoded: %v", err))
		return
	}
	segs, ok := arm.Segments(r)
	if !ok {
		arm.WriteError(w, arm.InvalidRequest("path", "The request path is not validly percent-encoded."))
		return
	}
	var matched *route
	var params map[string]string
	methodMismatch := false
	for i := range s.routes {
		rt := &s.routes[i]
		pm, ok := rt.pattern.Match(segs)
		if !ok {
			continue
		}
		if rt.method != r.Method {
			methodMismatch = true
			continue
		}
		matched, params = rt, pm
		break
	}
	if matched == nil {
		if methodMismatch {
			arm.WriteError(w, arm.Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The method %s is not allowed on %s.", r.Method, r.URL.Path))
			return
		}
		arm.WriteError(w, arm.Errorf(http.StatusNotFound, "NotFound", "No route matches %s %s.", r.Method, r.URL.Path))
		return
	}
	routeName = matched.name
	if !s.serves(matched.service) {
		arm.WriteError(w, arm.Errorf(http.StatusNotFound, "NotFound", "This instance runs the %s role and does not serve %s.", s.cfg.Role, matched.name))
		return
	}
	if (matched.roles != nil && !hasRole(matched.roles, p.Role)) || (matched.wholeStamp && delegated(p)) {
		arm.WriteError(w, arm.Forbidden(p.Actor(), matched.name, r.URL.Path))
		return
	}
	if err := matched.h(w, r, p, params); err != nil {
		s.serveError(w, id, err)
	}
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

// serveError is the one place errors become responses.
func (s *Server) serveError(w http.ResponseWriter, requestID string, err error) {
	if e, ok := arm.As(err); ok {
		arm.WriteError(w, e)
		return
	}
	var ie *directory.ImportError
	if errors.As(err, &ie) {
		arm.WriteError(w, arm.Errorf(http.StatusBadRequest, "InvalidDirectoryImport", "%s", ie.Error()))
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away; nobody is listening
	}
	if store.IsFull(err) {
		// Nothing was written (the transaction rolled back); the client
		// keeps its data and retries once space returns.
		s.deps.Logger.Error("storage full: refusing writes", "request_id", requestID, "err", err)
		e := arm.Errorf(http.StatusInsufficientStorage, "InsufficientStorage", "The server's storage is full; nothing was stored. Retry after the operator frees space.")
		e.RetryAfter = 30
		arm.WriteError(w, e)
		return
	}
	s.deps.Logger.Error("request failed", "request_id", requestID, "err", err)
	arm.WriteError(w, arm.ErrInternal)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, code := "ok", http.StatusOK
	if err := s.deps.DB.Ping(ctx); err != nil {
		status, code = "database unavailable", http.StatusServiceUnavailable
	}
	arm.WriteJSON(w, code, map[string]any{
		"status":         status,
		"time":           s.deps.Clock.Now().Format(time.RFC3339Nano),
		"simulatedClock": s.deps.Clock.Simulated(),
		"clockRate":      s.deps.Clock.Rate(),
		"role":           s.cfg.Role,
		"database":       s.cfg.DBDescription,
	})
}
