// Package arm holds the Azure Resource Manager conventions that real Azure SDK
// clients depend on: the error envelope, api-version checks, case-insensitive
// path matching on escaped segments, absolute nextLinks and opaque skip
// tokens.
//
// Domain packages return *Error values, a Kind with the seed's code and
// message, so that each is decided once, next to the rule that raises it;
// httpapi alone maps kinds to HTTP statuses and writes the envelope.
package arm

import (
	"errors"
	"fmt"
)

// Kind is what went wrong, as the rule that found it sees it. Domain
// packages choose a kind and the seed's code and message; only httpapi turns
// a kind into an HTTP status (httpapi.Status), for the API and the portal
// alike.
type Kind uint8

// The kinds. The zero Kind is Internal, so an Error built without one is
// never mistaken for the client's fault.
const (
	Internal        Kind = iota // a fault of the server, logged
	Invalid                     // the request breaks a rule: fix it, do not retry it
	Unauthenticated             // no valid credential
	Denied                      // the credential may not do this
	NotFound                    // no such object, or none the caller may see
	NotAllowed                  // the path does not take this method
	Precondition                // an If-Match / If-None-Match condition failed
	TooLarge                    // the request or batch is over its size limit
	Unsupported                 // the body's media type is not accepted
	Throttled                   // too many requests; retry after a while
	Unavailable                 // the service cannot take it now; retry
	Upstream                    // a service this one depends on failed
	Full                        // storage is full; retry when space returns
	Conflict                    // the request does not fit the object's current state, which the answer names
)

var kindNames = [...]string{"internal", "invalid", "unauthenticated", "denied", "not found", "method not allowed",
	"precondition failed", "too large", "unsupported media type", "throttled", "unavailable", "upstream failed", "storage full", "conflict"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is an error a client should see, in the ARM envelope
// {"error":{"code","message","target"}}.
type Error struct {
	Kind    Kind   `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
	// RetryAfter, in seconds, is sent as a Retry-After header when positive.
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
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

// Is reports whether err is an *Error of kind k.
func Is(err error, k Kind) bool {
	e, ok := As(err)
	return ok && e.Kind == k
}

// Common errors shared by every ARM-style endpoint.
var (
	ErrUnauthenticated = &Error{Kind: Unauthenticated, Code: "AuthenticationFailed",
		Message: "Authentication failed. The 'Authorization' header is missing or does not carry a valid bearer token."}
	ErrInternal = &Error{Kind: Internal, Code: "InternalServerError",
		Message: "The server encountered an internal error. It has been logged; retry the request."}
)

// Forbidden is the ARM-style authorization failure for an action at a scope.
func Forbidden(actor, action, scope string) *Error {
	return Errorf(Denied, "AuthorizationFailed",
		"The client '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid.", actor, action, scope)
}

// InvalidRequest is an Invalid error for a body or parameter the server
// cannot accept.
func InvalidRequest(target, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Code: "InvalidRequestContent", Message: fmt.Sprintf(format, args...), Target: target}
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
