package bridge

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerifyActivationKey edits a genuine activation key: verification never
// panics, every refusal is ErrActivation, and whatever it accepts carries
// exactly the claims commerce signed (an edit can only be harmless, such as
// base64 padding bits, never a change of registration, cloud or credential).
func FuzzVerifyActivationKey(f *testing.F) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	kid := keyID(&key.PublicKey)
	keys := JWKS{Keys: []JWK{toJWK(&key.PublicKey, kid)}}
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStack/registrations/r",
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.AddDate(1, 0, 0))},
		RegistrationName: "r", RegistrationUID: "uid", CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", BillingModel: "PayAsYouUse",
		UsageReportingEnabled: true, UsageEndpoint: "https://commerce", BridgeToken: "sbk_secret", Version: "1.0"}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	genuine, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	want, err := Verify(genuine, keys, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine, 10, byte('A'))
	f.Add(genuine, len(genuine)-1, byte('B'))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJzdGFja2JpbGwifQ.", 0, byte('e'))
	f.Fuzz(func(t *testing.T, base string, at int, b byte) {
		edited := base
		if len(edited) > 0 {
			i := ((at % len(edited)) + len(edited)) % len(edited)
			edited = edited[:i] + string(b) + edited[i+1:]
		}
		got, err := Verify(edited, keys, now)
		if err != nil {
			if !errors.Is(err, ErrActivation) {
				t.Fatalf("refusal %v is not ErrActivation", err)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("an edited key verified with other claims: %+v", got)
		}
	})
}

// TestBinaryBatchRoundTrip: the binary layout carries every field exactly,
