package meter

import "testing"

func TestBuiltinCatalogue(t *testing.T) {
	t.Parallel()
	ms, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 84 { // 85 documented rows less the custom-tier row without a GUID
		t.Fatalf("%d built-in meters", len(ms))
	}
	seen := map[string]bool{}
	for _, m := range ms {
		k, ok := Normalize(m.ID)
		if !ok || seen[k] {
			t.Fatalf("meter %s: normalizable %v, duplicate %v", m.ID, ok, seen[k])
		}
		seen[k] = true
	}
	for _, spelling := range []string{"F271A8A388C44D93956A063E1D2FA80B", "f271a8a3-88c4-4d93-956a-063e1d2fa80b", "{F271A8A3-88C4-4D93-956A-063E1D2FA80B}"} {
		if k, _ := Normalize(spelling); !seen[k] {
			t.Errorf("%s not found", spelling)
		}
	}
	if kindOf("IP addresses") != Level || kindOf("Virtual core hours") != Amount {
		t.Error("kinds")
	}
	for _, bad := range []string{"", "xyz", "f271a8a388c44d93956a063e1d2fa80", "f271a8a388c44d93956a063e1d2fa80b0"} {
		if _, ok := Normalize(bad); ok {
			t.Errorf("Normalize(%q) ok", bad)
		}
	}
}
