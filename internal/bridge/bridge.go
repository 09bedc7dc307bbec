// Package bridge is the stack's side of the Azure Bridge: it carries usage
// from a stack to commerce exactly once, as Azure Stack's bridge does. It
// owns:
//
//   - the handshake (this file): the stack's signed registration token,
//     commerce's signed activation key, and the stack's activation;
//   - forwarding (forward.go): sealing closed hours into the outbox and the
//     forwarder that sends them, retrying until commerce acknowledges.
//
// It shares only the batch format (package wire) with commerce's side,
// which verifies, maps and appends each batch to the ledger (package
// ingest).
//
// The handshake:
//  1. the stack prints a registration token: base64 JSON with its cloudId
//     (CloudDeploymentID, generated once and kept), objectId and billing
//     model, signed with the stack's own key;
//  2. a partner creates the registration on commerce with that token (ARM PUT);
//  3. POST …/getactivationkey returns an activation key: a JWS (RS256) signed
//     with commerce's key, naming the registration, the cloudId, the billing
//     model, commerce's usage endpoint, and a bridge credential that lets this
//     stack, and only for this registration, push usage;
//  4. `stackbill stack activate KEY` verifies the signature against
//     commerce's published keys and that the key names this stack's cloudId,
//     then stores the activation.
//
// The activation key carries a credential, so it is a secret, as Azure
// Stack's is. Issuing a new key revokes the registration's previous bridge
// credential.
package bridge

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
)

const (
	signingKeySetting = "commerce.activation_signing_key"
	activationSetting = "stack.activation"
	issuer            = "stackbill-commerce"
)

// Claims is the payload of an activation key. Field names follow the
// activation keys Azure Stack receives (reference §2.5) where they exist.
type Claims struct {
	jwt.RegisteredClaims
	SubscriptionID                string `json:"subscriptionId"`
	ResourceGroupName             string `json:"resourceGroupName"`
	RegistrationName              string `json:"registrationName"`
	RegistrationUID               string `json:"registrationUid"`
	CloudID                       string `json:"cloudId"`
	ObjectID                      string `json:"objectId"`
	BillingModel                  string `json:"billingModel"`
	UsageReportingEnabled         bool   `json:"usageReportingEnabled"`
	MarketplaceSyndicationEnabled bool   `json:"marketplaceSyndicationEnabled"`
	UsageEndpoint                 string `json:"usageEndpoint"`
	BridgeToken                   string `json:"bridgeToken"`
	Version                       string `json:"version"`
}

// JWK is one public key in JSON Web Key form.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// JWKS is a key set, as commerce publishes it at /v1/activation/keys.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// Signer signs activation keys with commerce's RSA key, generated on first
// use and kept in the database so keys stay verifiable across restarts and
// instances.
type Signer struct {
	db  *store.DB
	mu  sync.Mutex
	key *rsa.PrivateKey
	kid string
	// manifests are signed cloud manifests by base URL.
	manifests map[string]CloudManifest
}

// NewSigner returns a Signer; the key is loaded or generated lazily.
func NewSigner(db *store.DB) *Signer { return &Signer{db: db} }

func (s *Signer) load(ctx context.Context) error {
	// A mutex, not a sync.Once: a first caller whose request was cancelled
	// must not leave the error behind for every later caller.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		return nil
	}
	pemText, err := s.db.Setting(ctx, signingKeySetting, func() (string, error) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "", err
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
	})
	if err != nil {
		return fmt.Errorf("activation signing key: %w", err)
	}
	key, kid, err := parseKey(pemText)
	if err != nil {
		return err
	}
	s.key, s.kid = key, kid
	return nil
}

func parseKey(pemText string) (*rsa.PrivateKey, string, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, "", errors.New("activation signing key: not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, "", err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, "", errors.New("activation signing key: not RSA")
	}
	return rk, keyID(&rk.PublicKey), nil
}

func keyID(pub *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:8])
}

// JWKS returns the public key set.
func (s *Signer) JWKS(ctx context.Context) (JWKS, error) {
	if err := s.load(ctx); err != nil {
		return JWKS{}, err
	}
	return JWKS{Keys: []JWK{toJWK(&s.key.PublicKey, s.kid)}}, nil
}

func toJWK(pub *rsa.PublicKey, kid string) JWK {
	return JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: "RS256",
		N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()), E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

// SignCheckpoint signs an audit checkpoint (package audit) with commerce's
// key: RS256 over the message, base64url.
func (s *Signer) SignCheckpoint(ctx context.Context, msg []byte) (string, string, error) {
	return s.sign(ctx, msg)
}

// sign signs msg with commerce's key: RS256, base64url. What it signs
// (checkpoints, cloud manifests) is verified with CheckpointVerifier.
func (s *Signer) sign(ctx context.Context, msg []byte) (string, string, error) {
	if err := s.load(ctx); err != nil {
		return "", "", err
	}
	h := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, h[:])
	if err != nil {
		return "", "", err
	}
	return s.kid, base64.RawURLEncoding.EncodeToString(sig), nil
}

// CheckpointVerifier verifies audit checkpoints against a key set: the one
// this database holds, or one kept elsewhere (a stack's, or a saved copy
// of /v1/activation/keys), which an attacker with the database cannot swap.
func CheckpointVerifier(keys JWKS) func(kid string, msg []byte, signature string) error {
	return func(kid string, msg []byte, signature string) error {
		for _, k := range keys.Keys {
			if k.Kid != kid || k.Kty != "RSA" {
				continue
			}
			n, err1 := base64.RawURLEncoding.DecodeString(k.N)
			e, err2 := base64.RawURLEncoding.DecodeString(k.E)
			sig, err3 := base64.RawURLEncoding.DecodeString(signature)
			if err1 != nil || err2 != nil || err3 != nil {
				return fmt.Errorf("malformed key or signature")
			}
			pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
			h := sha256.Sum256(msg)
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig)
		}
		return fmt.Errorf("no key %q in the key set", kid)
	}
}

// LocalKeys returns commerce's key set when this database holds it (stack
// and commerce in one installation), without creating one.
func LocalKeys(ctx context.Context, db *store.DB) (JWKS, bool, error) {
	pemText, ok, err := db.LookupSetting(ctx, signingKeySetting)
	if err != nil || !ok {
		return JWKS{}, false, nil
	}
	k, kid, err := parseKey(pemText)
	if err != nil {
		return JWKS{}, false, err
	}
	return JWKS{Keys: []JWK{toJWK(&k.PublicKey, kid)}}, true, nil
}

// Registrations is what issuing needs of the registration service.
type Registrations interface {
	Get(ctx context.Context, p auth.Principal, k registration.Key) (registration.Registration, error)
	ScopeOf(ctx context.Context, r registration.Registration) (string, error)
}

// Credentials issues bridge credentials.
type Credentials interface {
	CreateBridge(ctx context.Context, actor, scope, registrationUID, name string) (string, error)
}

// Issuer issues activation keys on commerce.
type Issuer struct {
	signer *Signer
	regs   Registrations
	creds  Credentials
	now    func() time.Time
}

// NewIssuer builds an Issuer.
func NewIssuer(signer *Signer, regs Registrations, creds Credentials, now func() time.Time) *Issuer {
	return &Issuer{signer: signer, regs: regs, creds: creds, now: now}
}

// ActivationKey answers POST …/getactivationkey for a registration the caller
// may manage. usageEndpoint is commerce's base URL as the caller reached it.
func (i *Issuer) ActivationKey(ctx context.Context, p auth.Principal, k registration.Key, usageEndpoint string) (string, error) {
	reg, err := i.regs.Get(ctx, p, k)
	if err != nil {
		return "", err
	}
	if err := i.signer.load(ctx); err != nil {
		return "", err
	}
	scope, err := i.regs.ScopeOf(ctx, reg)
	if err != nil {
		return "", err
	}
	cred, err := i.creds.CreateBridge(ctx, p.Actor(), scope, reg.UID, "bridge for "+reg.Key.Name+" (cloud "+reg.CloudID+")")
	if err != nil {
		return "", err
	}
	now := i.now()
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: reg.Key.ResourceID(), IssuedAt: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.AddDate(10, 0, 0)), ID: reg.UID + "-" + strconv.FormatInt(now.UnixNano(), 36)},
		SubscriptionID: reg.Key.SubscriptionID, ResourceGroupName: reg.Key.ResourceGroup, RegistrationName: reg.Key.Name, RegistrationUID: reg.UID,
		CloudID: reg.CloudID, ObjectID: reg.ObjectID, BillingModel: string(reg.BillingModel), UsageReportingEnabled: reg.UsageReportingEnabled,
		MarketplaceSyndicationEnabled: reg.MarketplaceSyndicationEnabled, UsageEndpoint: usageEndpoint, BridgeToken: cred, Version: "1.0",
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = i.signer.kid
	return t.SignedString(i.signer.key)
}

// ErrActivation is returned for an activation key the stack refuses.
var ErrActivation = errors.New("activation key refused")

// Verify checks an activation key's signature against keys and returns its
// claims. Only RS256 with a known key id is accepted.
func Verify(key string, keys JWKS, now time.Time) (Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(key, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, k := range keys.Keys {
			if k.Kid == kid && k.Kty == "RSA" {
				n, err1 := base64.RawURLEncoding.DecodeString(k.N)
				e, err2 := base64.RawURLEncoding.DecodeString(k.E)
				if err1 != nil || err2 != nil {
					return nil, fmt.Errorf("malformed key %s", kid)
				}
				return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
			}
		}
		return nil, fmt.Errorf("it was not signed by this commerce (unknown key id %q)", kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(issuer), jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithExpirationRequired())
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrActivation, err)
	}
	return c, nil
}

// Activation is a stack's stored activation.
type Activation struct {
	Claims      Claims    `json:"claims"`
	ActivatedAt time.Time `json:"activatedAt"`
}

// Activate verifies key for this stack and stores it. The key must be signed
// by commerce and name this stack's cloudId.
func Activate(ctx context.Context, db *store.DB, key string, keys JWKS, now time.Time) (Activation, error) {
	c, err := Verify(key, keys, now)
	if err != nil {
		return Activation{}, err
	}
	id, err := Identity(ctx, db)
	if err != nil {
		return Activation{}, err
	}
	if c.CloudID != id.CloudID {
		return Activation{}, fmt.Errorf("%w: it was issued for the cloud %s (registration %s), and this stack is the cloud %s. Get the activation key of this stack's own registration",
			ErrActivation, c.CloudID, c.RegistrationName, id.CloudID)
	}
	a := Activation{Claims: c, ActivatedAt: now}
	b, _ := json.Marshal(a)
	return a, db.SetSetting(ctx, activationSetting, string(b))
}

// LoadActivation returns the stored activation, if any.
func LoadActivation(ctx context.Context, db *store.DB) (*Activation, error) {
	text, ok, err := db.LookupSetting(ctx, activationSetting)
	if err != nil {
		// An outage is not "not activated": the forwarder must say so.
		return nil, fmt.Errorf("read the stack's activation: %w", err)
	}
	if !ok {
		return nil, nil
	}
	var a Activation
	if err := json.Unmarshal([]byte(text), &a); err != nil {
		return nil, fmt.Errorf("stored activation: %w", err)
	}
	return &a, nil
}

// StackIdentity is who a stack is to commerce.
type StackIdentity struct {
	CloudID  string `json:"cloudId"`
	ObjectID string `json:"objectId"`
}

// Identity returns the stack's cloudId (its CloudDeploymentID) and objectId,
// generated once and kept.
func Identity(ctx context.Context, db *store.DB) (StackIdentity, error) {
	cloud, err := db.Setting(ctx, "stack.cloud_id", func() (string, error) { return tenancy.NewGUID(), nil })
	if err != nil {
		return StackIdentity{}, err
	}
	obj, err := db.Setting(ctx, "stack.object_id", func() (string, error) { return tenancy.NewGUID(), nil })
	return StackIdentity{CloudID: cloud, ObjectID: obj}, err
}

// stackKey is the stack's signing key for its registration tokens: Ed25519,
// generated once beside its cloudId and kept in its database, so that
// commerce can tell this stack's tokens from anyone else's for its cloud.
func stackKey(ctx context.Context, db *store.DB) (ed25519.PrivateKey, error) {
	seed, err := db.Setting(ctx, "stack.signing_key", func() (string, error) {
		b := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return base64.RawURLEncoding.EncodeToString(b), nil
	})
	if err != nil {
		return nil, err
	}
	b, err := base64.RawURLEncoding.DecodeString(seed)
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, errors.New("the stack's signing key is corrupt")
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// RegistrationToken builds the stack's registration token. usageReporting nil
// takes the billing model's default (reference §2.2).
func RegistrationToken(ctx context.Context, db *store.DB, model, agreement string, usageReporting *bool) (string, error) {
	m, ok := registration.ParseBillingModel(model)
	if !ok {
		return "", fmt.Errorf("--billing-model %q: want PayAsYouUse, Capacity, Development or Custom", model)
	}
	id, err := Identity(ctx, db)
	if err != nil {
		return "", err
	}
	yes := true
	t := registration.Token{CloudID: id.CloudID, ObjectID: id.ObjectID, BillingModel: m, AgreementNumber: agreement,
		UsageReportingEnabled: usageReporting, MarketplaceSyndicationEnabled: &yes, Issuer: "stackbill", Version: "1.0"}
	if m == registration.Capacity && usageReporting != nil && *usageReporting {
		return "", errors.New("registrations with the Capacity billing model do not report usage; drop --usage-reporting=true")
	}
	key, err := stackKey(ctx, db)
	if err != nil {
		return "", err
	}
	s := t.Sign(key)
	if _, aerr := registration.DecodeToken(s); aerr != nil {
		return "", errors.New(aerr.Message)
	}
	return s, nil
}
