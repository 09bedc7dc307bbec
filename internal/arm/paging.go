package arm

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// BaseURL is the scheme and host a client used to reach this server. Clients
// follow nextLink verbatim and the Go SDK rejects relative links, so links are
// absolute. X-Forwarded-Proto/Host are honoured for deployments behind a
// reverse proxy that sets them.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" && !strings.ContainsAny(h, "/ \\") {
		host = h
	}
	return scheme + "://" + host
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

// EncodeToken turns a cursor into an opaque base64url token.
func EncodeToken(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeToken reads a token produced by EncodeToken into v. A token that does
// not decode is the client's mistake: a 400, never a 500.
func DecodeToken(param, token string, v any) *Error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(token, "="))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return InvalidRequest(param, "The %s '%s' is not valid. Use the nextLink returned by the previous page.", param, token)
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
