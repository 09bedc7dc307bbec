// Package varbuf is the compact binary layout stackbill uses where JSON costs
// too much: the stack's intake log, commerce's log of forwarded usage, and
// the bridge's batches. Values are varints and varint-length-prefixed
// strings, appended to a byte slice and read back in the same order. A Reader remembers its first failure, so a
// decoder reads every field and checks once at the end; a truncated or
// overlong input is an error, never a panic or an allocation of a length
// the input cannot hold.
package varbuf

import (
	"encoding/binary"
	"errors"
)

// ErrCorrupt means the input does not hold what the reader asked for.
var ErrCorrupt = errors.New("corrupt binary payload")

// AppendString appends s with its length in front.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBool appends one byte, 1 or 0.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Reader reads what the Append functions wrote.
type Reader struct {
	b   []byte
	err error
	// shared is the whole input as one string when the reader hands out
	// substrings of it (NewSharedReader); total is the input's length.
	shared string
	total  int
}

// NewReader reads b. Each Text is a copy, so b may be reused afterwards.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// NewSharedReader reads b with one copy of it in all: every Text is a
// substring of that copy, which stays alive while any of them does. A
// decoder of tens of thousands of records of short strings, all of which
// live as long as the batch, spends a quarter of its time allocating them
// one by one otherwise.
func NewSharedReader(b []byte) *Reader { return &Reader{b: b, shared: string(b), total: len(b)} }

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 { return readVarint(r, binary.Uvarint) }

// Varint reads a signed varint.
func (r *Reader) Varint() int64 { return readVarint(r, binary.Varint) }

func readVarint[T uint64 | int64](r *Reader, read func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := read(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Count reads a count of items that each take at least one byte, so a
// corrupt count cannot make the caller allocate more than the input holds.
func (r *Reader) Count() int {
	n := r.Uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = ErrCorrupt
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

// Text reads a length-prefixed string.
func (r *Reader) Text() string {
	s, _ := r.Field()
	return s
}

// Field reads a length-prefixed string as Text does, and also returns its
// bytes within the input (not a copy), for checks that take a []byte.
func (r *Reader) Field() (string, []byte) {
	n := r.Uvarint()
	if r.err != nil {
		return "", nil
	}
	if n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return "", nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	if r.shared != "" {
		off := r.total - len(r.b) - int(n)
		return r.shared[off : off+int(n)], b
	}
	return string(b), b
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = ErrCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Bool reads what AppendBool wrote; any byte but 0 or 1 is corrupt.
func (r *Reader) Bool() bool {
	switch r.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.err = ErrCorrupt
	return false
}

// Fail marks the input corrupt, for a check the caller makes on what it
// read (an index out of range, say).
func (r *Reader) Fail() {
	if r.err == nil {
		r.err = ErrCorrupt
	}
}

// Err reports the first failure so far.
func (r *Reader) Err() error { return r.err }

// Done reports the first failure, or ErrCorrupt if input is left over.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		return ErrCorrupt
	}
	return r.err
}
