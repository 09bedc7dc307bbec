package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/store"
)

// Status is the HTTP status of each kind of error: the one mapping, used by
// the API and the portal alike. Invalid input is 400 (never 409 or 5xx,
// which SDK clients retry); only the kinds a retry can cure are 429 or 5xx.
func Status(k arm.Kind) int {
	switch k {
	case arm.Invalid:
		return http.StatusBadRequest
	case arm.Unauthenticated:
		return http.StatusUnauthorized
	case arm.Denied:
		return http.StatusForbidden
	case arm.NotFound:
		return http.StatusNotFound
	case arm.NotAllowed:
		return http.StatusMethodNotAllowed
	case arm.Precondition:
		return http.StatusPreconditionFailed
	case arm.TooLarge:
		return http.StatusRequestEntityTooLarge
	case arm.Unsupported:
		return http.StatusUnsupportedMediaType
	case arm.Throttled:
		return http.StatusTooManyRequests
	case arm.Unavailable:
		return http.StatusServiceUnavailable
	case arm.Upstream:
		return http.StatusBadGateway
	case arm.Full:
		return http.StatusInsufficientStorage
	case arm.Conflict:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Classify turns any error into what a client is told: domain errors as
// they are, the few sentinel errors of lower layers as their kinds, and
// anything else as an internal error the caller should log (fault).
func Classify(err error) (e *arm.Error, fault bool) {
	if e, ok := arm.As(err); ok {
		return e, e.Kind == arm.Internal
	}
	var ie *directory.ImportError
	switch {
	case errors.As(err, &ie):
		return arm.Errorf(arm.Invalid, "InvalidDirectoryImport", "%s", ie.Error()), false
	case errors.Is(err, directory.ErrNotFound):
		return arm.Errorf(arm.NotFound, "NotFound", "%s", err.Error()), false
	case store.IsFull(err):
		// Nothing was written (the transaction rolled back); the client
		// keeps its data and retries once space returns.
		e := arm.Errorf(arm.Full, "InsufficientStorage", "The server's storage is full; nothing was stored. Retry after the operator frees space.")
		e.RetryAfter = 30
		return e, false
	}
	return arm.ErrInternal, true
}

// WriteError writes e in the ARM envelope with its kind's status.
func WriteError(w http.ResponseWriter, e *arm.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	WriteJSON(w, Status(e.Kind), struct {
		Error *arm.Error `json:"error"`
	}{e})
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
