package arm

import (
	"net/http"
	"sort"
	"strings"
)

// CheckAPIVersion validates the api-version query parameter against the
// versions an endpoint supports and returns the one the client asked for.
// Missing and unknown versions are 400s: a client that retried them would
// only get the same answer.
func CheckAPIVersion(r *http.Request, missingCode string, supported ...string) (string, *Error) {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		return "", Errorf(Invalid, missingCode,
			"The api-version query parameter (?api-version=) is required for all requests. Supported versions: %s.", strings.Join(sorted(supported), ", "))
	}
	for _, s := range supported {
		if strings.EqualFold(v, s) {
			return s, nil
		}
	}
	return "", Errorf(Invalid, "NoRegisteredProviderFound",
		"No registered resource provider found for api-version '%s'. The supported api-versions are '%s'.", v, strings.Join(sorted(supported), ", "))
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
