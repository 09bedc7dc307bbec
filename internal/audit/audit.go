// Package audit is stackbill's append-only, hash-chained audit log.
//
// Every change to the directory, registrations, tenant mappings, price lists,
// meter maps, price books, invoices and tokens appends one record in the same
// transaction as the change: who (the principal's actor string), what (an
// action and the entity), when (the injected clock), and the entity's state
// before and after as JSON. A change that rolls back leaves no record, and a
// record never exists without its change.
//
// Each record's hash is SHA-256 over its predecessor's hash and its own
// canonical content, so editing, reordering or deleting a record breaks the
// chain from that point; Verify walks it. Commerce signs checkpoints of the
// chain's head (Checkpoint), so that a chain recomputed after an edit, or
// cut short, fails verification against the last checkpoint.
//
// A change appends its record, unchained, in its own transaction; the sealer
// (Seal: every second in every serving process, and before every read of
// the log) chains pending records under the one-row chain head's lock. Holding
// the head for the rest of every audited transaction, as appenders once did,
// made every registration write on PostgreSQL queue behind the last one;
// now only sealers take turns, a thousand records at a time, and the chain
// stays linear across several instances. Usage intake and ingestion are not
// audited (their records are themselves immutable and deduplicated).
package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Entry is one audit record.
type Entry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"` // e.g. "registration.approve"
	Kind   string    `json:"kind"`   // e.g. "registration"
	ID     string    `json:"id"`     // the entity's ID
	// Scope is the partner whose audit view includes the record (the most
	// specific owner: a reseller for its customers' records); "" is visible
	// to the operator only.
	Scope    string          `json:"scope,omitempty"`
	Before   json.RawMessage `json:"before"`
	After    json.RawMessage `json:"after"`
	PrevHash string          `json:"prevHash"`
	Hash     string          `json:"hash"`
}

// JSON renders a value for Before/After; nil is JSON null.
func JSON(v any) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(strconv.Quote(fmt.Sprint(v)))
	}
	return b
}

// hash is SHA-256 over the predecessor's hash and the record's fields, each
// length-prefixed so that no two different records hash alike.
func hash(prev string, e Entry) string {
	h := sha256.New()
	for _, f := range []string{prev, strconv.FormatInt(e.Seq, 10), strconv.FormatInt(clock.Micros(e.At), 10), e.Actor, e.Action, e.Kind, e.ID, e.Scope,
		string(orNull(e.Before)), string(orNull(e.After))} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func orNull(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// Append adds e to the log inside tx, the transaction of the change itself.
// The record commits with the change but takes its place in the chain when
// it is sealed (Seal): a change never waits on, or holds, the chain's head,
// so audited writers do not queue behind one another. A nil Before is filled
// in at sealing with the After of the entity's previous record.
func Append(ctx context.Context, tx *store.Tx, e Entry) error {
	var before any // NULL: fill in at sealing
	if e.Before != nil {
		before = string(e.Before)
	}
	if err := tx.Queue(ctx, `INSERT INTO audit_pending (at_us, actor, action, kind, entity_id, scope, before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		clock.Micros(e.At), e.Actor, e.Action, e.Kind, e.ID, e.Scope, before, string(orNull(e.After))); err != nil {
		return fmt.Errorf("append audit record: %w", err)
	}
	return nil
}

// sealBatch is how many pending records one sealing transaction chains.
const sealBatch = 1000

// Seal chains every record pending when it is called into the log, in the
// order their ids were drawn, and answers how many it sealed. It holds the
// chain's head for one batch at a time, so several instances sealing at once
// take turns and the chain stays linear. Two changes to one entity are
// serialised by the entity's own lock, so the later one draws the later id
// and is sealed after the earlier: each record's Before is its entity's
// previous After in chain order.
func Seal(ctx context.Context, db *store.DB) (int, error) {
	total := 0
	for {
		n := 0
		err := db.Write(ctx, func(tx *store.Tx) error {
			n = 0
			var seq int64
			var prev string
			if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+tx.DB().ForUpdate()).Scan(&seq, &prev); err != nil {
				return fmt.Errorf("audit head: %w", err)
			}
			rows, err := tx.QueryContext(ctx, `SELECT id, at_us, actor, action, kind, entity_id, scope, before, after FROM audit_pending ORDER BY id LIMIT ?`, sealBatch)
			if err != nil {
				return err
			}
			type pending struct {
				id     int64
				e      Entry
				before sql.NullString
			}
			var batch []pending
			for rows.Next() {
				var p pending
				var at int64
				var after string
				if err := rows.Scan(&p.id, &at, &p.e.Actor, &p.e.Action, &p.e.Kind, &p.e.ID, &p.e.Scope, &p.before, &after); err != nil {
					rows.Close()
					return err
				}
				p.e.At, p.e.After = clock.FromMicros(at), json.RawMessage(after)
				batch = append(batch, p)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if len(batch) == 0 {
				return nil
			}
			// The entity's latest After, for records sealed in this batch
			// before the log is asked.
			latest := map[[2]string]json.RawMessage{}
			for _, p := range batch {
				e := p.e
				switch k := [2]string{e.Kind, e.ID}; {
				case p.before.Valid:
					e.Before = json.RawMessage(p.before.String)
				case latest[k] != nil:
					e.Before = latest[k]
				default:
					var after string
					err := tx.QueryRowContext(ctx, `SELECT after FROM audit_log WHERE kind = ? AND entity_id = ? ORDER BY seq DESC LIMIT 1`, e.Kind, e.ID).Scan(&after)
					switch {
					case err == nil:
						e.Before = json.RawMessage(after)
					case !store.IsNoRows(err):
						return fmt.Errorf("audit before: %w", err)
					}
				}
				seq++
				e.Seq, e.Before, e.After, e.PrevHash = seq, orNull(e.Before), orNull(e.After), prev
				e.Hash = hash(prev, e)
				if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (seq, at_us, actor, action, kind, entity_id, scope, before, after, prev_hash, hash)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, clock.Micros(e.At), e.Actor, e.Action, e.Kind, e.ID, e.Scope, string(e.Before), string(e.After), e.PrevHash, e.Hash); err != nil {
					return fmt.Errorf("seal audit record: %w", err)
				}
				latest[[2]string{e.Kind, e.ID}] = e.After
				prev = e.Hash
			}
			// Exactly the ids sealed: on PostgreSQL a lower id drawn by a
			// transaction that commits only now is not in this batch, and
			// waits for the next.
			ids := make([]any, len(batch))
			for i, p := range batch {
				ids[i] = p.id
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM audit_pending WHERE id IN (`+store.Placeholders(len(ids))+`)`, ids...); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, seq, prev); err != nil {
				return fmt.Errorf("advance audit head: %w", err)
			}
			n = len(batch)
			return nil
		})
		total += n
		if err != nil || n < sealBatch {
			return total, err
		}
	}
}

const columns = `seq, at_us, actor, action, kind, entity_id, scope, before, after, prev_hash, hash`

func scan(rows interface{ Scan(...any) error }) (Entry, error) {
	var e Entry
	var at int64
	var before, after string
	if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Kind, &e.ID, &e.Scope, &before, &after, &e.PrevHash, &e.Hash); err != nil {
		return e, err
	}
	e.At, e.Before, e.After = clock.FromMicros(at), json.RawMessage(before), json.RawMessage(after)
	return e, nil
}

// Query selects audit records.
type Query struct {
	// Scopes limits records to these partners' scopes; nil means all.
	Scopes []string
	Kind   string
	ID     string
	After  int64 // records with seq > After
	Limit  int
}

// List seals what is pending, then returns records in chain order.
func List(ctx context.Context, db *store.DB, q Query) ([]Entry, error) {
	if _, err := Seal(ctx, db); err != nil {
		return nil, err
	}
	where := []string{"seq > ?"}
	args := []any{q.After}
	if q.Scopes != nil {
		if len(q.Scopes) == 0 {
			return nil, nil
		}
		where = append(where, "scope IN ("+store.Placeholders(len(q.Scopes))+")")
		for _, s := range q.Scopes {
			args = append(args, s)
		}
	}
	if q.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, q.Kind)
	}
	if q.ID != "" {
		where = append(where, "entity_id = ?")
		args = append(args, q.ID)
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 1000
	}
	args = append(args, q.Limit)
	rows, err := db.QueryContext(ctx, `SELECT `+columns+` FROM audit_log WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// CheckpointSigner signs checkpoints of the chain's head: commerce's
// activation signing key (package bridge), whose public half stacks already
// hold and commerce publishes.
type CheckpointSigner interface {
	SignCheckpoint(ctx context.Context, msg []byte) (kid, signature string, err error)
}

// CheckpointVerifier checks a checkpoint's signature with the key kid.
type CheckpointVerifier func(kid string, msg []byte, signature string) error

func checkpointMessage(seq int64, hash string, atUs int64) []byte {
	return []byte("stackbill-audit-checkpoint/1\n" + strconv.FormatInt(seq, 10) + "\n" + hash + "\n" + strconv.FormatInt(atUs, 10))
}

// Checkpoint signs the chain's head if it moved since the last checkpoint,
// and reports whether it wrote one. The hashes alone prove only that the
// chain is consistent: anyone who can write the table can edit a record and
// recompute every hash after it, or cut records off the end. A signed
// checkpoint pins the head at an instant, so Verify catches both up to the
// last checkpoint; commerce writes one every minute.
func Checkpoint(ctx context.Context, db *store.DB, signer CheckpointSigner, now time.Time) (bool, error) {
	if _, err := Seal(ctx, db); err != nil {
		return false, err
	}
	var seq, last int64
	var hash string
	if err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return false, err
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints`).Scan(&last); err != nil {
		return false, err
	}
	if seq == 0 || seq <= last {
		return false, nil
	}
	at := clock.Micros(now)
	kid, sig, err := signer.SignCheckpoint(ctx, checkpointMessage(seq, hash, at))
	if err != nil {
		return false, err
	}
	wrote := false
	err = db.Write(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, at_us, kid, signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`, seq, hash, at, kid, sig)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		wrote = n == 1
		return nil
	})
	return wrote, err
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Records     int64
	Checkpoints int
	// LastCheckpoint is the sequence of the last checkpoint (0: none);
	// records after it are protected by their hashes only.
	LastCheckpoint int64
	LastAt         time.Time
}

// Broken describes where the chain fails verification.
type Broken struct {
	Seq    int64
	Reason string
}

func (b *Broken) Error() string {
	return fmt.Sprintf("audit chain broken at record %d: %s", b.Seq, b.Reason)
}

// Verify walks the whole chain and reports the records checked, or a
// *Broken error at the first record that does not fit: a changed field, a
// missing or reordered record, or a head that does not match the last
// record. With verify, it also checks every signed checkpoint: a bad
// signature, a record whose hash differs from its checkpoint's (the chain
// was recomputed after an edit), or a checkpoint past the chain's end (the
// tail was cut) is a *Broken too.
func Verify(ctx context.Context, db *store.DB, progress func(n int64), verify CheckpointVerifier) (VerifyReport, error) {
	var rep VerifyReport
	if _, err := Seal(ctx, db); err != nil {
		return rep, err
	}
	var headSeq int64
	var headHash string
	if err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		return rep, err
	}
	checkpoints := map[int64]string{}
	if verify != nil {
		rows, err := db.QueryContext(ctx, `SELECT seq, hash, at_us, kid, signature FROM audit_checkpoints ORDER BY seq`)
		if err != nil {
			return rep, err
		}
		for rows.Next() {
			var seq, at int64
			var hash, kid, sig string
			if err := rows.Scan(&seq, &hash, &at, &kid, &sig); err != nil {
				rows.Close()
				return rep, err
			}
			if err := verify(kid, checkpointMessage(seq, hash, at), sig); err != nil {
				rows.Close()
				return rep, &Broken{Seq: seq, Reason: fmt.Sprintf("the checkpoint at record %d is not signed by commerce's key (%v)", seq, err)}
			}
			checkpoints[seq] = hash
			rep.Checkpoints++
			rep.LastCheckpoint, rep.LastAt = seq, clock.FromMicros(at)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, err
		}
	}
	prev, want := "", int64(1)
	const chunk = 5000
	for {
		rows, err := db.QueryContext(ctx, `SELECT `+columns+` FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?`, want, chunk)
		if err != nil {
			return rep, err
		}
		n := 0
		for rows.Next() {
			e, err := scan(rows)
			if err != nil {
				rows.Close()
				return rep, err
			}
			n++
			switch {
			case e.Seq != want:
				rows.Close()
				return rep, &Broken{Seq: want, Reason: fmt.Sprintf("record %d is missing (next is %d)", want, e.Seq)}
			case e.PrevHash != prev:
				rows.Close()
				return rep, &Broken{Seq: e.Seq, Reason: "it does not link to the record before it"}
			case hash(prev, e) != e.Hash:
				rows.Close()
				return rep, &Broken{Seq: e.Seq, Reason: "its content does not match its hash (edited after it was written)"}
			}
			if cp, ok := checkpoints[e.Seq]; ok && cp != e.Hash {
				rows.Close()
				return rep, &Broken{Seq: e.Seq, Reason: "its hash differs from the signed checkpoint of it: the chain was recomputed after an edit at or before this record"}
			}
			prev = e.Hash
			rep.Records = want
			want++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, err
		}
		if progress != nil {
			progress(want - 1)
		}
		if n < chunk {
			break
		}
	}
	switch {
	case rep.LastCheckpoint > want-1:
		return rep, &Broken{Seq: want, Reason: fmt.Sprintf("the chain ends at record %d, but a signed checkpoint covers record %d: records were cut from the end", want-1, rep.LastCheckpoint)}
	case want-1 != headSeq:
		return rep, &Broken{Seq: want, Reason: fmt.Sprintf("the chain ends at record %d but its head says %d (records removed from the end?)", want-1, headSeq)}
	case prev != headHash:
		return rep, &Broken{Seq: headSeq, Reason: "the head's hash does not match the last record"}
	}
	return rep, nil
}

// Log reads the audit log for the API and the CLI.
type Log struct{ db *store.DB }

// NewLog builds a Log.
func NewLog(db *store.DB) *Log { return &Log{db: db} }

// List returns records in chain order; see Query.
func (l *Log) List(ctx context.Context, q Query) ([]Entry, error) { return List(ctx, l.db, q) }

// Verify checks the whole chain and its checkpoints; see Verify.
func (l *Log) Verify(ctx context.Context, progress func(n int64), verify CheckpointVerifier) (VerifyReport, error) {
	return Verify(ctx, l.db, progress, verify)
}

// Count is the number of records (the chain head's sequence), once every
// pending record is sealed.
func (l *Log) Count(ctx context.Context) (int64, error) {
	if _, err := Seal(ctx, l.db); err != nil {
		return 0, err
	}
	var n int64
	err := l.db.QueryRowContext(ctx, `SELECT seq FROM audit_head WHERE id = 1`).Scan(&n)
	return n, err
}
