package arm

import (
	"net/http"
	"net/url"
	"strings"
)

// Segments splits the request's escaped path on "/" and unescapes each
// segment, so that "%2F" inside a name stays part of that name (the Go SDK
// escapes path parameters with url.QueryEscape).
func Segments(r *http.Request) ([]string, bool) {
	raw := strings.Trim(r.URL.EscapedPath(), "/")
	if raw == "" {
		return nil, true
	}
	parts := strings.Split(raw, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

// Pattern is a path template such as
// "subscriptions/{subscriptionId}/providers/Microsoft.AzureStack/registrations".
// Literal segments match case-insensitively, as ARM does.
type Pattern struct {
	text  string
	parts []string
}

// NewPattern parses a template. A last segment "{name...}" matches the rest
// of the path, any number of segments; "" is the root.
func NewPattern(text string) Pattern {
	t := strings.Trim(text, "/")
	if t == "" {
		return Pattern{text: text}
	}
	return Pattern{text: text, parts: strings.Split(t, "/")}
}

func (p Pattern) String() string { return p.text }

// Match returns the path parameters when segs fit the pattern.
func (p Pattern) Match(segs []string) (map[string]string, bool) {
	if n := len(p.parts); n > 0 && strings.HasSuffix(p.parts[n-1], "...}") {
		if len(segs) < n-1 {
			return nil, false
		}
		params, ok := Pattern{parts: p.parts[:n-1]}.Match(segs[:n-1])
		if !ok {
			return nil, false
		}
		if params == nil {
			params = map[string]string{}
		}
		params[strings.TrimSuffix(p.parts[n-1][1:], "...}")] = strings.Join(segs[n-1:], "/")
		return params, true
	}
	if len(segs) != len(p.parts) {
		return nil, false
	}
	var params map[string]string
	for i, part := range p.parts {
		if strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}") {
			if segs[i] == "" {
				return nil, false
			}
			if params == nil {
				params = make(map[string]string, 4)
			}
			params[part[1:len(part)-1]] = segs[i]
			continue
		}
		if !strings.EqualFold(part, segs[i]) {
			return nil, false
		}
	}
	return params, true
}
