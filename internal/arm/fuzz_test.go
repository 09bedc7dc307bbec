package arm

import (
	"testing"
)

// FuzzTokens edits sealed paging tokens: any token other than the one the
// server issued is refused with a 400 and decodes nothing.
func FuzzTokens(f *testing.F) {
	tokens := NewTokens([]byte("fuzzing key, 32 bytes long......"))
	type cursor struct {
		Sub  string `json:"s"`
		Hour int64  `json:"h"`
	}
	valid := tokens.Encode(cursor{"aaaaaaaa-0000-4000-8000-00000000000a", 1773014400000000})
	f.Add(valid, 0, byte('x'))
	f.Add(valid, len(valid)-1, byte('A'))
	f.Add("", 0, byte('.'))
	f.Fuzz(func(t *testing.T, base string, at int, b byte) {
		tok := base
		if len(tok) > 0 {
			i := ((at % len(tok)) + len(tok)) % len(tok)
			tok = tok[:i] + string(b) + tok[i+1:]
		} else {
			tok = string(b)
		}
		var c cursor
		err := tokens.Decode("continuationToken", tok, &c)
		if tok == valid {
			if err != nil {
				t.Fatalf("the issued token was refused: %v", err)
			}
			return
		}
		if err == nil && tok != base {
			// Only an unmodified token the server sealed may decode; base is
			// the fuzzer's own string and can only be sealed by chance.
			t.Fatalf("edited token %q decoded to %+v", tok, c)
		}
		if err != nil && err.Kind != Invalid {
			t.Fatalf("refusal is %s, want invalid", err.Kind)
		}
	})
}
