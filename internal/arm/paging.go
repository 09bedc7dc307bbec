package arm

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// BaseURL is the scheme and host a client used to reach this server. Clients
// follow nextLink verbatim and the Go SDK rejects relative links, so links are
// absolute. The server decides it once per request (WithBaseURL): its
// configured public URL, or what a trusted proxy forwarded; without either,
// the request's own Host. Forwarded headers from anyone else are ignored.
func BaseURL(r *http.Request) string {
	if b, ok := r.Context().Value(baseURLKey{}).(string); ok {
		return b
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

type baseURLKey struct{}

// WithBaseURL fixes the base URL that BaseURL reports for a request.
func WithBaseURL(ctx context.Context, base string) context.Context {
	return context.WithValue(ctx, baseURLKey{}, strings.TrimRight(base, "/"))
}

// NextLink builds the absolute URL of the next page: the same path and query
// with the token parameter replaced. Every value is percent-encoded and the
// token is base64url, because the Go SDK re-encodes the query (a raw '+'
// would arrive as a space).
func NextLink(r *http.Request, tokenParam, token string) string {
	q := r.URL.Query()
	q.Set(tokenParam, token)
	return BaseURL(r) + r.URL.EscapedPath() + "?" + q.Encode()
}

// Tokens seals paging cursors (skip tokens, continuation tokens) so that
// clients cannot forge or edit them: a token is base64url JSON followed by a
// truncated HMAC-SHA256 under a server key. The key is generated once and
// kept in the database, so tokens survive restarts and work on every
// instance that shares the database.
type Tokens struct{ key []byte }

// NewTokens builds a sealer with key (at least 16 bytes).
func NewTokens(key []byte) Tokens { return Tokens{key: key} }

func (t Tokens) mac(body string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Encode turns a cursor into an opaque, sealed token.
func (t Tokens) Encode(v any) string {
	b, _ := json.Marshal(v)
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + t.mac(body)
}

// Decode reads a token produced by Encode into v. A token that does not
// decode or whose seal does not match (edited, forged, or sealed under another
// key) is the client's mistake: a 400, never a 500, and never read.
func (t Tokens) Decode(param, token string, v any) *Error {
	body, seal, ok := strings.Cut(token, ".")
	bad := InvalidRequest(param, "The %s '%s' is not valid. Use the nextLink returned by the previous page.", param, token)
	if !ok || !hmac.Equal([]byte(seal), []byte(t.mac(body))) {
		return bad
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return bad
	}
	return nil
}

// QueryParam reads a query parameter case-insensitively, since ARM clients
// differ in the casing of $skipToken and friends.
func QueryParam(q url.Values, name string) string {
	if v := q.Get(name); v != "" {
		return v
	}
	for k, v := range q {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
