package directory

import (
	"strings"
	"testing"
)

func TestParseImportReportsLines(t *testing.T) {
	t.Parallel()
	doc := "{\n  \"partners\": [\n    {\"id\": \"a\", \"name\": \"A\", \"type\": \"DirectCSP\"},\n    {\"id\": \"b\", \"nme\": \"B\"}\n  ],\n  \"extra\": []\n}"
	_, problems := parseImport([]byte(doc))
	if len(problems) != 1 || !strings.HasPrefix(problems[0], "line 4: partners[1]") {
		t.Fatalf("problems %q", problems)
	}
	if _, problems := parseImport([]byte(`[]`)); len(problems) != 1 {
		t.Fatalf("not an object: %q", problems)
	}
}

// FuzzParseImport: any document yields entries or line-numbered problems,
// never a panic.
func FuzzParseImport(f *testing.F) {
	f.Add([]byte(`{"partners":[{"id":"contoso","name":"Contoso","type":"DirectCSP"}],"customers":[],"subscriptions":[]}`))
	f.Add([]byte("{\n\"partners\": [1, {\"id\": 2}]}"))
	f.Add([]byte(`{"partners":`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, problems := parseImport(data)
		for _, p := range problems {
			if !strings.HasPrefix(p, "line ") {
				t.Fatalf("problem without a line: %q", p)
			}
		}
	})
}
