package varbuf

import (
	"encoding/binary"
	"testing"
)

func TestRoundTripAndTruncation(t *testing.T) {
	b := AppendString(nil, "subscription")
	b = AppendBool(b, true)
	b = binary.AppendVarint(b, -3_600_000_000)
	b = binary.AppendUvarint(b, 1) // one item follows
	b = AppendString(b, "")
	for _, newReader := range []func([]byte) *Reader{NewReader, NewSharedReader} {
		r := newReader(b)
		if s, ok, v, n, e := r.Text(), r.Bool(), r.Varint(), r.Count(), r.Text(); s != "subscription" || !ok || v != -3_600_000_000 || n != 1 || e != "" || r.Done() != nil {
			t.Fatalf("read back %q %v %d %d %q %v", s, ok, v, n, e, r.Done())
		}
	}
	// A shared reader's strings survive the input's reuse, as copies do.
	in := AppendString(AppendString(nil, "tenant"), "meter")
	r := NewSharedReader(in)
	a, m := r.Text(), r.Text()
	clear(in)
	if a != "tenant" || m != "meter" {
		t.Fatalf("after reuse of the input: %q %q", a, m)
	}
	for cut := 0; cut < len(b); cut++ {
		r := NewSharedReader(b[:cut])
		r.Text()
		r.Bool()
		r.Varint()
		r.Count()
		r.Text()
		if r.Done() == nil {
			t.Fatalf("a payload cut at %d of %d bytes read as whole", cut, len(b))
		}
	}
	if r := NewReader(append(b, 0)); func() error {
		r.Text()
		r.Bool()
		r.Varint()
		r.Count()
		r.Text()
		return r.Done()
	}() == nil {
		t.Fatal("trailing bytes were not reported")
	}
}

// FuzzReader: arbitrary input never panics, and a count never exceeds what
// the input could hold.
func FuzzReader(f *testing.F) {
	f.Add(AppendString(binary.AppendUvarint(nil, 3), "abc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(b)
		if n := r.Count(); n > len(b) {
			t.Fatalf("count %d from %d bytes", n, len(b))
		}
		_ = r.Text()
		_ = r.Bool()
		_ = r.Varint()
		_ = r.Done()
	})
}
