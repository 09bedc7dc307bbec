// Package auth issues and checks stackbill's bearer tokens and carries the
// authenticated principal through a request.
//
// A token is "sbk_<id>_<secret>". Only the SHA-256 of the secret is stored,
// looked up by the public id and compared in constant time: the secret is 256
// random bits, so a slow password hash would add latency and no safety. Each
// token has one role and, for scoped roles, one scope (a partner or a
// subscription).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Role is what a token may do.
type Role string

const (
	// RoleOperator runs commerce: the directory, approvals, everything.
	RoleOperator Role = "operator"
	// RolePartner acts for one direct CSP or indirect provider, including the
	// provider's resellers.
	RolePartner Role = "partner"
	// RoleReseller acts for one indirect reseller and its customers only.
	RoleReseller Role = "reseller"
	// RoleStackOperator runs a stack (stamp).
	RoleStackOperator Role = "stack-operator"
	// RoleTenant reads one user subscription's local usage.
	RoleTenant Role = "tenant"
	// RoleBridge is a stack's activation credential for pushing usage.
	RoleBridge Role = "bridge"
	// RoleUsageWriter lets a resource provider post usage events.
	RoleUsageWriter Role = "usage-writer"
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleOperator, RolePartner, RoleReseller, RoleStackOperator, RoleTenant, RoleBridge, RoleUsageWriter:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want operator, partner, reseller, stack-operator, tenant, bridge or usage-writer", s)
}

// Principal is the authenticated caller.
type Principal struct {
	Role           Role
	PartnerID      string // partner and reseller roles
	SubscriptionID string // tenant role; a delegated provider's stack-operator role
	// RegistrationUID scopes a bridge credential to one registration.
	RegistrationUID string
	TokenID         string
}

// Actor names the principal in history and audit records. It never contains
// the secret.
func (p Principal) Actor() string {
	switch {
	case p.PartnerID != "":
		return fmt.Sprintf("%s:%s/%s", p.Role, p.PartnerID, p.TokenID)
	case p.SubscriptionID != "":
		return fmt.Sprintf("%s:%s/%s", p.Role, p.SubscriptionID, p.TokenID)
	case p.RegistrationUID != "":
		return fmt.Sprintf("%s:%s/%s", p.Role, p.RegistrationUID, p.TokenID)
	default:
		return fmt.Sprintf("%s/%s", p.Role, p.TokenID)
	}
}

// Token is a stored token's metadata.
type Token struct {
	ID             string
	Role           Role
	PartnerID      string
	SubscriptionID string
	Name           string
	CreatedAt      time.Time
	ExpiresAt      *time.Time
	RevokedAt      *time.Time
}

// ErrInvalid is returned for an unknown, malformed, revoked or expired token.
var ErrInvalid = errors.New("invalid token")

// Service issues and checks tokens.
type Service struct {
	db       *store.DB
	clock    *clock.Clock
	operator []byte // SHA-256 of STACKBILL_OPERATOR_TOKEN, if set
}

// NewService builds a Service. operatorToken, when non-empty, is accepted as an
// operator token without being stored.
func NewService(db *store.DB, c *clock.Clock, operatorToken string) *Service {
	s := &Service{db: db, clock: c}
	if operatorToken != "" {
		h := sha256.Sum256([]byte(operatorToken))
		s.operator = h[:]
	}
	return s
}

// Create issues a token and returns its full text, which is shown once.
func (s *Service) Create(ctx context.Context, role Role, partnerID, subscriptionID, name string, ttl time.Duration) (string, Token, error) {
	var text string
	var t Token
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		var err error
		text, t, err = s.create(ctx, tx, DirectActor, partnerID, role, partnerID, subscriptionID, "", name, ttl)
		return err
	})
	if err != nil {
		return "", Token{}, fmt.Errorf("store token: %w", err)
	}
	return text, t, nil
}

// create inserts a token inside tx and audits it as actor's, in scope.
func (s *Service) create(ctx context.Context, tx *store.Tx, actor, scope string, role Role, partnerID, subscriptionID, registrationUID, name string, ttl time.Duration) (string, Token, error) {
	idBytes := make([]byte, 10)
	secret := make([]byte, 32)
	if _, err := rand.Read(idBytes); err != nil {
		return "", Token{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", Token{}, err
	}
	id := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(idBytes))
	secretText := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(secretText))
	now := s.clock.Now()
	t := Token{ID: id, Role: role, PartnerID: partnerID, SubscriptionID: subscriptionID, Name: name, CreatedAt: now}
	var expires any
	if ttl > 0 {
		e := now.Add(ttl)
		t.ExpiresAt = &e
		expires = clock.Micros(e)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, hash, role, partner_id, subscription_id, registration_uid, name, created_at_us, expires_at_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, hex.EncodeToString(sum[:]), string(role), partnerID, subscriptionID, registrationUID, name, clock.Micros(now), expires); err != nil {
		return "", Token{}, err
	}
	// Metadata only: neither the secret nor its hash enters the log.
	after := map[string]any{"id": id, "role": role, "partnerId": partnerID, "subscriptionId": subscriptionID, "registrationUid": registrationUID,
		"name": name, "createdAt": now, "expiresAt": t.ExpiresAt}
	if err := audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "token.create", Kind: "token", ID: id, Scope: scope, After: audit.JSON(after)}); err != nil {
		return "", Token{}, err
	}
	return "sbk_" + id + "_" + secretText, t, nil
}

// DirectActor names who changes tokens: whoever holds the database, through
// stackbill token, serve --demo or activation (tokens are not managed over
// the API).
const DirectActor = "stackbill (database)"

// Authenticate checks a bearer token and returns its principal.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	if bearer == "" {
		return Principal{}, ErrInvalid
	}
	if s.operator != nil {
		h := sha256.Sum256([]byte(bearer))
		if subtle.ConstantTimeCompare(h[:], s.operator) == 1 {
			return Principal{Role: RoleOperator, TokenID: "env"}, nil
		}
	}
	rest, ok := strings.CutPrefix(bearer, "sbk_")
	if !ok {
		return Principal{}, ErrInvalid
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || secret == "" {
		return Principal{}, ErrInvalid
	}
	if len(id) > 64 || len(secret) > 128 {
		return Principal{}, ErrInvalid
	}
	hash, p, err := s.byID(ctx, id)
	if err != nil {
		return Principal{}, err
	}
	want, err := hex.DecodeString(hash)
	if err != nil {
		return Principal{}, ErrInvalid
	}
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return Principal{}, ErrInvalid
	}
	return p, nil
}

// byID loads a live token's hash and principal: ErrInvalid when it does not
// exist, was revoked or has expired.
func (s *Service) byID(ctx context.Context, id string) (string, Principal, error) {
	var (
		hash, role, partnerID, subID, regUID string
		expires, revoked                     sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `SELECT hash, role, partner_id, subscription_id, registration_uid, expires_at_us, revoked_at_us FROM tokens WHERE id = ?`, id).
		Scan(&hash, &role, &partnerID, &subID, &regUID, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", Principal{}, ErrInvalid
	}
	if err != nil {
		return "", Principal{}, fmt.Errorf("look up token: %w", err)
	}
	if revoked.Valid || (expires.Valid && !s.clock.Now().Before(clock.FromMicros(expires.Int64))) {
		return "", Principal{}, ErrInvalid
	}
	return hash, Principal{Role: Role(role), PartnerID: partnerID, SubscriptionID: subID, RegistrationUID: regUID, TokenID: id}, nil
}

// SessionTTL is how long a portal sign-in lasts.
const SessionTTL = 12 * time.Hour

// SessionCookie is the portal session's cookie: the portal sets it, and the
// server resolves it to a principal before any page runs.
const SessionCookie = "stackbill_session"

// Session is a portal sign-in: its principal, and the secret its forms
// carry against cross-site requests.
type Session struct {
	Principal Principal
	CSRF      string
}

// StartSession signs a bearer token in to the portal and returns the new
// session's ID, which the browser keeps in a cookie. Only the ID's SHA-256
// is stored, and the cookie never holds the token itself: a stolen cookie
// ends with its session, and the API token stays out of the browser.
func (s *Service) StartSession(ctx context.Context, bearer string) (string, Session, error) {
	p, err := s.Authenticate(ctx, bearer)
	if err != nil {
		return "", Session{}, err
	}
	envHash := ""
	if p.TokenID == "env" {
		envHash = hex.EncodeToString(s.operator)
	}
	raw := make([]byte, 32)
	csrf := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", Session{}, err
	}
	if _, err := rand.Read(csrf); err != nil {
		return "", Session{}, err
	}
	id := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(id))
	sess := Session{Principal: p, CSRF: hex.EncodeToString(csrf)}
	now := s.clock.Now()
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO portal_sessions (id_hash, token_id, env_hash, csrf, created_at_us, expires_at_us) VALUES (?, ?, ?, ?, ?, ?)`,
			hex.EncodeToString(sum[:]), p.TokenID, envHash, sess.CSRF, clock.Micros(now), clock.Micros(now.Add(SessionTTL)))
		return err
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("store session: %w", err)
	}
	return id, sess, nil
}

// Session returns a live session by its ID: ErrInvalid when it does not
// exist or has expired, or when its token was revoked or expired since.
func (s *Service) Session(ctx context.Context, id string) (Session, error) {
	if id == "" || len(id) > 64 {
		return Session{}, ErrInvalid
	}
	sum := sha256.Sum256([]byte(id))
	var tokenID, envHash, csrf string
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT token_id, env_hash, csrf, expires_at_us FROM portal_sessions WHERE id_hash = ?`, hex.EncodeToString(sum[:])).
		Scan(&tokenID, &envHash, &csrf, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrInvalid
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	if !s.clock.Now().Before(clock.FromMicros(expires)) {
		return Session{}, ErrInvalid
	}
	if tokenID == "env" {
		// The operator's token from the environment: the session lasts
		// while the process accepts the same token.
		if s.operator == nil || envHash != hex.EncodeToString(s.operator) {
			return Session{}, ErrInvalid
		}
		return Session{Principal: Principal{Role: RoleOperator, TokenID: "env"}, CSRF: csrf}, nil
	}
	_, p, err := s.byID(ctx, tokenID)
	if err != nil {
		return Session{}, err
	}
	return Session{Principal: p, CSRF: csrf}, nil
}

// EndSession signs a session out. Ending one that is gone is harmless.
func (s *Service) EndSession(ctx context.Context, id string) error {
	sum := sha256.Sum256([]byte(id))
	return s.db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM portal_sessions WHERE id_hash = ?`, hex.EncodeToString(sum[:]))
		return err
	})
}

// PurgeSessions deletes expired sessions.
func (s *Service) PurgeSessions(ctx context.Context) (int64, error) {
	return s.db.DeleteInBatches(ctx, `DELETE FROM portal_sessions WHERE id_hash IN (SELECT id_hash FROM portal_sessions WHERE expires_at_us < ? LIMIT 5000)`,
		clock.Micros(s.clock.Now()))
}

// CreateBridge issues the bridge credential of a registration and revokes
// the registration's earlier ones, in one transaction: only the most
// recently activated stack may push usage for it, and a crash never leaves
// two. Both are audited as actor's (who asked for the activation key), in
// scope (the registration's partner), with the registration they belong to.
func (s *Service) CreateBridge(ctx context.Context, actor, scope, registrationUID, name string) (string, error) {
	var text string
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM tokens WHERE registration_uid = ? AND revoked_at_us IS NULL`, registrationUID)
		if err != nil {
			return err
		}
		var old []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			old = append(old, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := s.clock.Now()
		for _, id := range old {
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at_us = ? WHERE id = ?`, clock.Micros(now), id); err != nil {
				return err
			}
			if err := audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "token.revoke", Kind: "token", ID: id, Scope: scope,
				After: audit.JSON(map[string]any{"id": id, "revoked": true, "registrationUid": registrationUID, "reason": "superseded by a new activation key"})}); err != nil {
				return err
			}
		}
		text, _, err = s.create(ctx, tx, actor, scope, RoleBridge, "", "", registrationUID, name, 0)
		return err
	})
	if err != nil {
		return "", err
	}
	return text, nil
}

// List returns every stored token's metadata, newest first.
func (s *Service) List(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, role, partner_id, subscription_id, name, created_at_us, expires_at_us, revoked_at_us FROM tokens ORDER BY created_at_us DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var role string
		var created int64
		var exp, rev sql.NullInt64
		if err := rows.Scan(&t.ID, &role, &t.PartnerID, &t.SubscriptionID, &t.Name, &created, &exp, &rev); err != nil {
			return nil, err
		}
		t.Role = Role(role)
		t.CreatedAt = clock.FromMicros(created)
		if exp.Valid {
			e := clock.FromMicros(exp.Int64)
			t.ExpiresAt = &e
		}
		if rev.Valid {
			r := clock.FromMicros(rev.Int64)
			t.RevokedAt = &r
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Revoke revokes a token by id. Revoking twice is harmless.
func (s *Service) Revoke(ctx context.Context, id string) error {
	return s.db.Write(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at_us = COALESCE(revoked_at_us, ?) WHERE id = ?`, clock.Micros(s.clock.Now()), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no token with id %q", id)
		}
		var partner string
		if err := tx.QueryRowContext(ctx, `SELECT partner_id FROM tokens WHERE id = ?`, id).Scan(&partner); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: DirectActor, Action: "token.revoke", Kind: "token", ID: id, Scope: partner,
			After: audit.JSON(map[string]any{"id": id, "revoked": true})})
	})
}

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

type sessionKey struct{}

// WithSession returns a context carrying a portal session (and its
// principal).
func WithSession(ctx context.Context, s Session) context.Context {
	return context.WithValue(WithPrincipal(ctx, s.Principal), sessionKey{}, s)
}

// SessionFrom returns the request's portal session, if signed in.
func SessionFrom(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(Session)
	return s, ok
}

// FromContext returns the principal of the request, if authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
