package notify

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Policy says where webhooks may be sent. Commerce runs inside a CSP's
// network, so an endpoint is a request commerce makes on a partner's
// behalf: without a policy a partner could make it call the database, a
// cloud's metadata service or the stack (server-side request forgery).
type Policy struct {
	// AllowLoopback admits http and https endpoints on the loopback
	// addresses (127.0.0.0/8, ::1): for tests and a demo receiver on the
	// same host, never for production.
	AllowLoopback bool
	// AllowedHosts, when not empty, are the only hosts endpoints may name:
	// "example.com" admits that host, ".example.com" its subdomains.
	AllowedHosts []string
}

// Endpoint is a webhook endpoint.
type Endpoint struct {
	ID          string   `json:"id"`
	OwnerID     string   `json:"ownerId,omitempty"`
	URL         string   `json:"url"`
	Types       []string `json:"types"`
	Description string   `json:"description,omitempty"`
	Enabled     bool     `json:"enabled"`
	CreatedAt   string   `json:"createdAt"`
	CreatedBy   string   `json:"createdBy"`
	UpdatedAt   string   `json:"updatedAt"`
	// Secret is set only in the answer that made the endpoint.
	Secret string `json:"secret,omitempty"`
}

// EndpointInput is what a caller sets on an endpoint; a nil field is left
// as it is on an update.
type EndpointInput struct {
	URL         *string   `json:"url"`
	Types       *[]string `json:"types"`
	Description *string   `json:"description"`
	Enabled     *bool     `json:"enabled"`
}

// maxEndpoints bounds how many endpoints one owner keeps: every event costs
// a delivery row per endpoint.
const maxEndpoints = 20

// owner is whose endpoints p keeps: a partner's or reseller's own ID, ""
// for the operator.
func owner(p auth.Principal) string {
	if p.Role == auth.RoleOperator {
		return ""
	}
	return p.PartnerID
}

// NewService builds a Service.
func NewService(db *store.DB, c *clock.Clock, policy Policy, opts SenderOptions) *Service {
	s := &Service{db: db, clock: c, policy: policy}
	s.sender = newSender(s, opts)
	return s
}

// checkURL answers why raw may not be an endpoint, or nil.
func (pol Policy) checkURL(raw string) error {
	bad := func(format string, args ...any) error { return arm.InvalidRequest("url", format, args...) }
	if len(raw) > 2048 || !utf8.ValidString(raw) {
		return bad("An endpoint URL is at most 2,048 characters of UTF-8.")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return bad("'%s' is not an absolute URL.", raw)
	}
	if u.User != nil {
		return bad("An endpoint URL may not carry a user name or password; sign-in is by the signature header.")
	}
	if u.Fragment != "" {
		return bad("An endpoint URL may not carry a fragment.")
	}
	// "localhost." is localhost: names are compared without the root dot.
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	loopback := isLoopbackHost(host)
	switch u.Scheme {
	case "https":
	case "http":
		if !(loopback && pol.AllowLoopback) {
			return bad("Webhooks are sent over https only; '%s' is %s.", raw, u.Scheme)
		}
	default:
		return bad("Webhooks are sent over https only; '%s' is %s.", raw, u.Scheme)
	}
	if loopback {
		if !pol.AllowLoopback {
			return bad("'%s' is a loopback address; webhooks go to hosts outside this one (serve --webhooks-allow-loopback admits it, for tests).", host)
		}
		return nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && !publicAddr(ip) {
		return bad("'%s' is not a public address; webhooks go to public hosts.", host)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".internal") || strings.HasSuffix(host, ".local") || !strings.Contains(host, ".") && net.ParseIP(host) == nil {
		return bad("'%s' is not a public host name; webhooks go to public hosts.", host)
	}
	if len(pol.AllowedHosts) > 0 && !slices.ContainsFunc(pol.AllowedHosts, func(a string) bool {
		a = strings.ToLower(a)
		if strings.HasPrefix(a, ".") {
			return strings.HasSuffix(host, a)
		}
		return host == a
	}) {
		return bad("'%s' is not among the hosts this commerce sends webhooks to (%s).", host, strings.Join(pol.AllowedHosts, ", "))
	}
	return nil
}

func isLoopbackHost(host string) bool {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

// publicAddr reports whether ip is one a webhook may reach: not loopback,
// private, link-local (cloud metadata services), multicast, unspecified or
// in the shared and reserved ranges.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach private IPv4
	netip.MustParsePrefix("2002::/16"),    // 6to4 likewise
}

// checkTypes answers why types may not be an endpoint's, or nil.
func checkTypes(types []string) error {
	if len(types) == 0 {
		return arm.InvalidRequest("types", "Name the event types the endpoint takes, or [\"*\"] for all: %s.", strings.Join(Types(), ", "))
	}
	if len(types) > len(Types())+1 {
		return arm.InvalidRequest("types", "An endpoint takes at most %d event types.", len(Types()))
	}
	for _, t := range types {
		if t != "*" && !knownType(t) {
			return arm.InvalidRequest("types", "'%.100s' is not an event type; the types are %s.", t, strings.Join(Types(), ", "))
		}
	}
	return nil
}

// newSecret is a Standard Webhooks secret: whsec_ and 32 random bytes in
// base64.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}

// CreateEndpoint makes an endpoint owned by p and answers it with its
// secret, the only time the secret is shown.
func (s *Service) CreateEndpoint(ctx context.Context, p auth.Principal, in EndpointInput) (Endpoint, error) {
	if !commerce(p) {
		return Endpoint{}, arm.Forbidden(p.Actor(), "webhooks/write", "/v1/webhooks")
	}
	if in.URL == nil {
		return Endpoint{}, arm.InvalidRequest("url", "An endpoint needs a url.")
	}
	if err := s.policy.checkURL(*in.URL); err != nil {
		return Endpoint{}, err
	}
	types := []string{"*"}
	if in.Types != nil {
		types = *in.Types
	}
	if err := checkTypes(types); err != nil {
		return Endpoint{}, err
	}
	desc := ""
	if in.Description != nil {
		desc = *in.Description
	}
	if len(desc) > 500 || !utf8.ValidString(desc) {
		return Endpoint{}, arm.InvalidRequest("description", "A description is at most 500 characters of UTF-8.")
	}
	now := s.clock.Now()
	e := Endpoint{ID: newID("ep_"), OwnerID: owner(p), URL: *in.URL, Types: dedupe(types), Description: desc, Enabled: in.Enabled == nil || *in.Enabled,
		CreatedAt: stamp(now), CreatedBy: p.Actor(), UpdatedAt: stamp(now), Secret: newSecret()}
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_endpoints WHERE owner_id = ?`, e.OwnerID).Scan(&n); err != nil {
			return err
		}
		if n >= maxEndpoints {
			return arm.InvalidRequest("", "You keep %d webhook endpoints, the most one owner may; delete one first.", n)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_endpoints (id, owner_id, url, description, secret, enabled, created_at_us, created_by, updated_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, e.OwnerID, e.URL, e.Description, e.Secret, flag(e.Enabled), clock.Micros(now), e.CreatedBy, clock.Micros(now)); err != nil {
			return err
		}
		if err := saveTypes(ctx, tx, e.ID, e.Types); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "webhook.create", Kind: "webhook", ID: e.ID, Scope: e.OwnerID, After: audit.JSON(e.redacted())})
	})
	return e, err
}

func (e Endpoint) redacted() Endpoint { e.Secret = ""; return e }

func saveTypes(ctx context.Context, tx *store.Tx, id string, types []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM notify_endpoint_types WHERE endpoint_id = ?`, id); err != nil {
		return err
	}
	for _, t := range types {
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_endpoint_types (endpoint_id, type) VALUES (?, ?)`, id, t); err != nil {
			return err
		}
	}
	return nil
}

func dedupe(types []string) []string {
	out := slices.Clone(types)
	slices.Sort(out)
	out = slices.Compact(out)
	if slices.Contains(out, "*") {
		return []string{"*"}
	}
	return out
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

func stamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000000Z07:00") }

// Endpoints lists the endpoints p keeps (the operator: every endpoint).
func (s *Service) Endpoints(ctx context.Context, p auth.Principal) ([]Endpoint, error) {
	if !commerce(p) {
		return nil, arm.Forbidden(p.Actor(), "webhooks/read", "/v1/webhooks")
	}
	q := `SELECT id, owner_id, url, description, enabled, created_at_us, created_by, updated_at_us FROM notify_endpoints`
	var args []any
	if p.Role != auth.RoleOperator {
		q += ` WHERE owner_id = ?`
		args = append(args, owner(p))
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY owner_id, id`, args...)
	out, err := store.Collect(rows, err, scanEndpoint)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Types, err = s.types(ctx, s.db, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Service) types(ctx context.Context, q store.Querier, id string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT type FROM notify_endpoint_types WHERE endpoint_id = ? ORDER BY type`, id)
	return store.Collect(rows, err, func(r store.Scanner) (t string, err error) { return t, r.Scan(&t) })
}

func scanEndpoint(r store.Scanner) (Endpoint, error) {
	var e Endpoint
	var enabled int
	var created, updated int64
	if err := r.Scan(&e.ID, &e.OwnerID, &e.URL, &e.Description, &enabled, &created, &e.CreatedBy, &updated); err != nil {
		return Endpoint{}, err
	}
	e.Enabled, e.CreatedAt, e.UpdatedAt = enabled == 1, stamp(clock.FromMicros(created)), stamp(clock.FromMicros(updated))
	return e, nil
}

// load reads endpoint id if p may see it; one it may not is not found.
func (s *Service) load(ctx context.Context, q store.Querier, p auth.Principal, id string) (Endpoint, error) {
	query := `SELECT id, owner_id, url, description, enabled, created_at_us, created_by, updated_at_us FROM notify_endpoints WHERE id = ?`
	args := []any{id}
	if p.Role != auth.RoleOperator {
		query += ` AND owner_id = ?`
		args = append(args, owner(p))
	}
	if !commerce(p) {
		return Endpoint{}, errEndpointNotFound(id)
	}
	e, err := scanEndpoint(q.QueryRowContext(ctx, query, args...))
	if err == sql.ErrNoRows {
		return Endpoint{}, errEndpointNotFound(id)
	}
	if err != nil {
		return Endpoint{}, err
	}
	e.Types, err = s.types(ctx, q, id)
	return e, err
}

func errEndpointNotFound(id string) error {
	return arm.Errorf(arm.NotFound, "WebhookNotFound", "Webhook endpoint '%.100s' was not found.", id)
}

// Endpoint is one endpoint p keeps.
func (s *Service) Endpoint(ctx context.Context, p auth.Principal, id string) (Endpoint, error) {
	return s.load(ctx, s.db, p, id)
}

// UpdateEndpoint changes what in sets on an endpoint p keeps.
func (s *Service) UpdateEndpoint(ctx context.Context, p auth.Principal, id string, in EndpointInput) (Endpoint, error) {
	if in.URL != nil {
		if err := s.policy.checkURL(*in.URL); err != nil {
			return Endpoint{}, err
		}
	}
	if in.Types != nil {
		if err := checkTypes(*in.Types); err != nil {
			return Endpoint{}, err
		}
	}
	if in.Description != nil && (len(*in.Description) > 500 || !utf8.ValidString(*in.Description)) {
		return Endpoint{}, arm.InvalidRequest("description", "A description is at most 500 characters of UTF-8.")
	}
	var out Endpoint
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		before, err := s.load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		out = before
		if in.URL != nil {
			out.URL = *in.URL
		}
		if in.Types != nil {
			out.Types = dedupe(*in.Types)
		}
		if in.Description != nil {
			out.Description = *in.Description
		}
		if in.Enabled != nil {
			out.Enabled = *in.Enabled
		}
		now := s.clock.Now()
		out.UpdatedAt = stamp(now)
		if _, err := tx.ExecContext(ctx, `UPDATE notify_endpoints SET url = ?, description = ?, enabled = ?, updated_at_us = ? WHERE id = ?`,
			out.URL, out.Description, flag(out.Enabled), clock.Micros(now), id); err != nil {
			return err
		}
		if err := saveTypes(ctx, tx, id, out.Types); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "webhook.update", Kind: "webhook", ID: id, Scope: out.OwnerID,
			Before: audit.JSON(before), After: audit.JSON(out)})
	})
	return out, err
}

// RotationOverlap is how long the previous secret keeps signing beside the
// new one after a rotation.
const RotationOverlap = 24 * time.Hour

// RotateSecret gives an endpoint p keeps a new secret, answered once; for
// RotationOverlap deliveries are signed with both, so the receiver can move
// to the new one without refusing what is in flight.
func (s *Service) RotateSecret(ctx context.Context, p auth.Principal, id string) (Endpoint, error) {
	var out Endpoint
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		cur, err := s.load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		now := s.clock.Now()
		out = cur
		out.Secret, out.UpdatedAt = newSecret(), stamp(now)
		if _, err := tx.ExecContext(ctx, `UPDATE notify_endpoints SET previous_secret = secret, previous_until_us = ?, secret = ?, updated_at_us = ? WHERE id = ?`,
			clock.Micros(now.Add(RotationOverlap)), out.Secret, clock.Micros(now), id); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "webhook.rotate_secret", Kind: "webhook", ID: id, Scope: cur.OwnerID,
			After: audit.JSON(map[string]any{"previousSignsUntil": now.Add(RotationOverlap)})})
	})
	return out, err
}

// DeleteEndpoint removes an endpoint p keeps, with its deliveries and
// their log.
func (s *Service) DeleteEndpoint(ctx context.Context, p auth.Principal, id string) error {
	return s.db.Write(ctx, func(tx *store.Tx) error {
		before, err := s.load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM notify_attempts WHERE delivery_id IN (SELECT id FROM notify_deliveries WHERE endpoint_id = ?)`,
			`DELETE FROM notify_deliveries WHERE endpoint_id = ?`,
			`DELETE FROM notify_endpoint_types WHERE endpoint_id = ?`,
			`DELETE FROM notify_endpoints WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: p.Actor(), Action: "webhook.delete", Kind: "webhook", ID: id, Scope: before.OwnerID, Before: audit.JSON(before)})
	})
}
