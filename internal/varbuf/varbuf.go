// Package varbuf is the compact binary layout stackbill uses where JSON costs
// too much: the stack's intake log and the bridge's batches. Values are
// varints and varint-length-prefixed strings, appended to a byte slice and
// read back in the same order. A Reader remembers its first failure, so a
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
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

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

// Text reads a length-prefixed string (a copy: the input may be reused).
func (r *Reader) Text() string {
	n := r.Uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
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

// Err reports the first failure so far.
func (r *Reader) Err() error { return r.err }

// Done reports the first failure, or ErrCorrupt if input is left over.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		return ErrCorrupt
	}
	return r.err
}
