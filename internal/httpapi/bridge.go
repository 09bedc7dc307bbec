package httpapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/ingest"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/wire"
)

// maxBridgeBody bounds a decompressed bridge batch.
const maxBridgeBody = 64 << 20

func (s *Server) postBridgeUsage(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	tooLarge := func() error {
		return arm.Errorf(arm.TooLarge, "RequestEntityTooLarge", "The decompressed batch is larger than %d bytes.", maxBridgeBody)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBridgeBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return arm.Errorf(arm.TooLarge, "RequestEntityTooLarge", "The batch is larger than %d bytes.", maxBridgeBody)
		}
		return arm.InvalidRequest("", "The body could not be read: %v", err)
	}
	select {
	case s.bridgeSlots <- struct{}{}:
		defer func() { <-s.bridgeSlots }()
	case <-r.Context().Done():
		return r.Context().Err()
	}
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "zstd":
		if s.zstd == nil {
			return arm.Errorf(arm.Unsupported, "UnsupportedContentEncoding", "Content-Encoding zstd is not available; use gzip or none.")
		}
		if raw, err = s.zstd.DecodeAll(raw, nil); err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
				return tooLarge()
			}
			return arm.InvalidRequest("", "The zstd body could not be read: %v", err)
		}
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return arm.InvalidRequest("", "The gzip body could not be read: %v", err)
		}
		if raw, err = io.ReadAll(io.LimitReader(zr, maxBridgeBody+1)); err != nil {
			return arm.InvalidRequest("", "The gzip body could not be read: %v", err)
		}
		if len(raw) > maxBridgeBody {
			return tooLarge()
		}
	default:
		return arm.Errorf(arm.Unsupported, "UnsupportedContentEncoding", "Content-Encoding %q is not supported; use zstd, gzip or none.", enc)
	}
	var b wire.Batch
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == wire.ContentTypeBinary {
		if err := b.UnmarshalBinary(raw); err != nil {
			return arm.InvalidRequest("", "The batch could not be decoded: %v", err)
		}
	} else if err := decodeStrict(raw, &b); err != nil {
		return err
	}
	res, err := s.deps.Ingestor.Ingest(r.Context(), p, b)
	var order *ingest.OutOfOrderError
	if errors.As(err, &order) {
		at, _ := json.Marshal(order.At)
		w.Header().Set(wire.StreamAtHeader, string(at))
	}
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, res)
	return nil
}

// bridgeStatusJSON is the bridge's status with what the stack's stages hold
// in quarantine.
type bridgeStatusJSON struct {
	bridge.Status
	Quarantined int64 `json:"quarantinedRecords"`
}

func (s *Server) bridgeStatus(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	st, err := s.deps.Forwarder.Status(r.Context())
	if err != nil {
		return err
	}
	counts, err := s.deps.Quarantine.Counts(r.Context())
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, bridgeStatusJSON{Status: st, Quarantined: counts[quarantine.Aggregation] + counts[quarantine.Seal]})
	return nil
}

// forwardedUsage lets a partner read its customers' forwarded usage by
// subscription, meter and day. End customers have no role here.
func (s *Server) forwardedUsage(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	q := r.URL.Query()
	sub := q.Get("subscriptionId")
	if _, err := s.deps.Directory.GetSubscription(r.Context(), p, sub); err != nil {
		return err
	}
	from, to := time.Unix(0, 0).UTC(), s.deps.Clock.Now().Add(time.Hour)
	for name, dst := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return arm.InvalidRequest(name, "'%s' is not an RFC 3339 time.", v)
			}
			*dst = t.UTC()
		}
	}
	sub = strings.ToLower(sub)
	totals, err := s.deps.Ledger.Totals(r.Context(), []string{sub}, from, to)
	if err != nil {
		return err
	}
	// Each total names its local meter, so no reader sees bare meter IDs.
	out := make([]forwardedTotal, len(totals))
	for i, t := range totals {
		out[i].ChargedTotal = t
		if s.deps.Meters != nil {
			if m, ok := s.deps.Meters.Lookup(r.Context(), t.LocalMeterID); ok {
				out[i].MeterName, out[i].Unit = m.Name, m.Unit
			}
		}
	}
	WriteJSON(w, http.StatusOK, listJSON[forwardedTotal]{Value: out})
	return nil
}

// forwardedTotal is a day's forwarded usage of one meter with the meter's
// name and unit.
type forwardedTotal struct {
	ledger.ChargedTotal
	MeterName string `json:"meterName,omitempty"`
	Unit      string `json:"unit,omitempty"`
}

func (s *Server) getMeterMap(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	vs, err := s.deps.BillingMap.Versions(r.Context())
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[meter.MapVersion]{Value: vs})
	return nil
}

func (s *Server) putMeterMap(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	var in struct {
		EffectiveFrom time.Time            `json:"effectiveFrom"`
		Meters        []meter.BillingMeter `json:"meters"`
	}
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	v, err := s.deps.BillingMap.Publish(r.Context(), p, in.EffectiveFrom, in.Meters)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, v)
	return nil
}
