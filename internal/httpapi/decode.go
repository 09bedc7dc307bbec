package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/stackbill/stackbill/internal/arm"
)

// readBody reads a bounded request body. Oversized bodies are a 413, never a
// reason to buffer without limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")) {
			return nil, arm.Errorf(arm.Unsupported, "UnsupportedMediaType", "The content type '%s' is not supported; send application/json.", ct)
		}
	}
	return storableBody(readLimited(w, r, limit))
}

// readCSVBody reads a bounded CSV upload (text/csv, or no content type).
func readCSVBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "text/csv" || mt == "text/plain" || mt == "application/octet-stream") {
			return nil, arm.Errorf(arm.Unsupported, "UnsupportedMediaType", "The content type '%s' is not supported; send text/csv.", ct)
		}
	}
	return storableBody(readLimited(w, r, limit))
}

func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := readAll(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, arm.Errorf(arm.TooLarge, "RequestEntityTooLarge", "The request body is larger than the limit of %d bytes.", limit)
		}
		return nil, arm.InvalidRequest("", "The request body could not be read: %v", err)
	}
	return body, nil
}

// storableBody refuses a body that is not valid UTF-8 or holds NUL, raw or
// escaped: PostgreSQL's TEXT refuses NUL, and a value one engine cannot
// store must be a clear 400 on both, never a 500. (Usage intake checks
// event by event instead, so that one bad event does not sink its batch.)
func storableBody(body []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 || hasNULEscape(body) {
		return nil, arm.InvalidRequest("", "The request body must be valid UTF-8 without NUL characters (nor \\u0000 escapes).")
	}
	return body, nil
}

// hasNULEscape reports a JSON \u0000 escape: outside a string it is not
// JSON anyway, inside one it would decode to NUL. An escaped backslash
// before "u0000" is not one.
func hasNULEscape(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			continue
		}
		if b[i+1] == 'u' && i+5 < len(b) && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

// readAll reads a body into one buffer of its declared length when it has
// one: growing a buffer by doubling copied each megabyte of an intake batch
// about twice. net/http never lets a body run past its Content-Length.
func readAll(rd io.Reader, declared, limit int64) ([]byte, error) {
	if declared <= 0 || declared > limit {
		return io.ReadAll(rd)
	}
	body := make([]byte, declared)
	if _, err := io.ReadFull(rd, body); err != nil {
		return nil, err
	}
	return body, nil
}

// decodeStrict decodes a JSON body into v, rejecting unknown fields, trailing
// data and malformed JSON with a 400 that names the problem.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return arm.InvalidRequest("", "The request body is empty; a JSON object is required.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return arm.InvalidRequest(jsonTarget(err), "The request content was invalid and could not be deserialized: %s", describeJSONError(err))
	}
	if dec.More() {
		return arm.InvalidRequest("", "The request content was invalid: unexpected data after the JSON object.")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return arm.InvalidRequest("", "The request content was invalid: unexpected data after the JSON object.")
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d (%v)", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Sprintf("the field '%s' must be of type %s, not %s", te.Field, te.Type, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "could not find member " + strings.TrimPrefix(err.Error(), "json: unknown field ") + " on the object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	return err.Error()
}

func jsonTarget(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if s, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return strings.Trim(s, `"`)
	}
	return ""
}
