package arm

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCanonicalGUID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"E09A4E93-29A7-4EBA-A6D4-76202383F07F": "e09a4e93-29a7-4eba-a6d4-76202383f07f",
		"e09a4e93-29a7-4eba-a6d4-76202383f07f": "e09a4e93-29a7-4eba-a6d4-76202383f07f",
	} {
		if got, ok := CanonicalGUID(in); !ok || got != want {
			t.Errorf("CanonicalGUID(%q) = %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "e09a4e9329a74eba a6d476202383f07f", "{e09a4e93-29a7-4eba-a6d4-76202383f07f}", "g09a4e93-29a7-4eba-a6d4-76202383f07f", "e09a4e93-29a7-4eba-a6d4_76202383f07f"} {
		if _, ok := CanonicalGUID(bad); ok {
			t.Errorf("CanonicalGUID(%q) accepted", bad)
		}
	}
}

func TestPatternAndSegments(t *testing.T) {
	t.Parallel()
	p := NewPattern("subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.AzureStack/registrations/{name}")
	// The Go SDK escapes path parameters with QueryEscape; %2F stays inside a segment.
	r := httptest.NewRequest("GET", "/SUBSCRIPTIONS/s1/resourcegroups/my%20rg%2B1/providers/microsoft.azurestack/REGISTRATIONS/reg%2Fx%25", nil)
	segs, ok := Segments(r)
	if !ok {
		t.Fatal("Segments failed")
	}
	params, ok := p.Match(segs)
	if !ok || params["sub"] != "s1" || params["rg"] != "my rg+1" || params["name"] != "reg/x%" {
		t.Fatalf("Match = %v %v", params, ok)
	}
	if _, ok := p.Match(segs[:len(segs)-1]); ok {
		t.Fatal("a shorter path matched")
	}
}

func TestTokensAndNextLink(t *testing.T) {
	t.Parallel()
	type cur struct{ A string }
	tokens := NewTokens([]byte("0123456789abcdef0123456789abcdef"))
	tok := tokens.Encode(cur{"x+y/z=="})
	var got cur
	if err := tokens.Decode("$skipToken", tok, &got); err != nil || got.A != "x+y/z==" {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if err := tokens.Decode("$skipToken", "!!", &got); err == nil || err.Kind != Invalid {
		t.Fatalf("garbage token: %v", err)
	}
	// An edited cursor, a forged one and one sealed under another key are
	// all refused.
	body, seal, _ := strings.Cut(tok, ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"A":"other"}`))
	other := NewTokens([]byte("another key, another installation"))
	for _, bad := range []string{forged + "." + seal, body + "x." + seal, body, forged, other.Encode(cur{"x+y/z=="})} {
		if err := tokens.Decode("$skipToken", bad, &got); err == nil || err.Kind != Invalid {
			t.Fatalf("tampered token %q accepted", bad)
		}
	}
	r := httptest.NewRequest("GET", "http://host:8080/subscriptions/s/providers/Microsoft.AzureStack/registrations?api-version=2017-06-01", nil)
	// A forwarded header alone changes nothing: the server decides the
	// base URL (its public URL, or a trusted proxy's word) and sets it.
	r.Header.Set("X-Forwarded-Host", "evil.example")
	if got := NextLink(r, "$skipToken", tok); got != "http://host:8080/subscriptions/s/providers/Microsoft.AzureStack/registrations?%24skipToken="+tok+"&api-version=2017-06-01" {
		t.Fatalf("NextLink = %s", got)
	}
	r = r.WithContext(WithBaseURL(r.Context(), "https://billing.example.com/"))
	if got := NextLink(r, "$skipToken", tok); got != "https://billing.example.com/subscriptions/s/providers/Microsoft.AzureStack/registrations?%24skipToken="+tok+"&api-version=2017-06-01" {
		t.Fatalf("NextLink = %s", got)
	}
}
