// Package arm holds the Azure Resource Manager conventions that real Azure SDK
// clients depend on: the error envelope, api-version checks, case-insensitive
// path matching on escaped segments, absolute nextLinks and opaque skip
// tokens.
//
// Domain packages return *Error values so that the seed error codes and their
// messages are decided once, next to the rule that raises them, and HTTP
// handlers only encode them.
package arm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is an error a client should see, in the ARM envelope
// {"error":{"code","message","target"}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
	// RetryAfter, in seconds, is sent as a Retry-After header when positive.
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithTarget returns a copy of e naming the offending field.
func (e *Error) WithTarget(target string) *Error {
	c := *e
	c.Target = target
	return &c
}

// As extracts an *Error from err.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Common errors shared by every ARM-style endpoint.
var (
	ErrUnauthenticated = &Error{Status: http.StatusUnauthorized, Code: "AuthenticationFailed",
		Message: "Authentication failed. The 'Authorization' header is missing or does not carry a valid bearer token."}
	ErrInternal = &Error{Status: http.StatusInternalServerError, Code: "InternalServerError",
		Message: "The server encountered an internal error. It has been logged; retry the request."}
)

// Forbidden is the ARM-style authorization failure for an action at a scope.
func Forbidden(actor, action, scope string) *Error {
	return Errorf(http.StatusForbidden, "AuthorizationFailed",
		"The client '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid.", actor, action, scope)
}

// InvalidRequest is a 400 for a body or parameter the server cannot accept.
func InvalidRequest(target, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidRequestContent", Message: fmt.Sprintf(format, args...), Target: target}
}

// WriteJSON writes v as JSON with the content type every client parses.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
}

// WriteError writes e in the ARM envelope.
func WriteError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	WriteJSON(w, e.Status, struct {
		Error *Error `json:"error"`
	}{e})
}

// CanonicalGUID validates a GUID in its 8-4-4-4-12 form and returns it in
// lower case, the form stackbill stores. Azure treats subscription and tenant
// IDs case-insensitively, so comparisons use the canonical form.
func CanonicalGUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	b := []byte(s)
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
			continue
		}
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + ('a' - 'A')
		default:
			return "", false
		}
	}
	return string(b), true
}
