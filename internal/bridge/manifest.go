package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// CloudManifest is Microsoft.AzureStack's cloudManifestFiles resource as
// commerce serves it: what a stack needs to know of commerce before it
// holds any credential. Its deployment data names commerce's endpoints (the
// ARM endpoint, where stacks register and forward usage, and the key
// endpoint) and carries the public keys that sign activation keys; the
// signature is commerce's, over ManifestMessage. A stack trusts the
// manifest because it fetched it from the commerce URL its operator
// configured (over TLS in production); the signature ties the keys and
// endpoints together, so a proxy cannot swap one of them alone.
type CloudManifest struct {
	ID         string                  `json:"id"`
	Name       string                  `json:"name"`
	Type       string                  `json:"type"`
	Etag       string                  `json:"etag,omitempty"`
	Properties CloudManifestProperties `json:"properties"`
}

// CloudManifestProperties is the manifest's data and signature.
type CloudManifestProperties struct {
	DeploymentData ManifestData `json:"deploymentData"`
	Signature      string       `json:"signature"`
}

// ManifestData is the manifest's deployment data, in the specs' names.
type ManifestData struct {
	// ExternalDsmsCertificates holds commerce's activation-key verification
	// keys as a JWKS document.
	ExternalDsmsCertificates string `json:"externalDsmsCertificates"`
	// CustomCloudVerificationKey is the ID of the key that signed the
	// manifest (one of the JWKS's).
	CustomCloudVerificationKey string            `json:"customCloudVerificationKey"`
	Endpoints                  ManifestEndpoints `json:"customEnvironmentEndpoints"`
}

// ManifestEndpoints are commerce's endpoints.
type ManifestEndpoints struct {
	CustomCloudArmEndpoint string `json:"customCloudArmEndpoint"`
	ExternalDsmsEndpoint   string `json:"externalDsmsEndpoint"`
}

// ManifestMessage is what a manifest's signature covers: each field on a
// line of its own, in a fixed order, so that no JSON re-encoding can change
// it.
func ManifestMessage(d ManifestData) []byte {
	return []byte(strings.Join([]string{"stackbill cloud manifest v1", d.ExternalDsmsCertificates, d.CustomCloudVerificationKey,
		d.Endpoints.CustomCloudArmEndpoint, d.Endpoints.ExternalDsmsEndpoint}, "\n"))
}

// Manifest is commerce's signed cloud manifest for clients that reach it at
// baseURL. Its version is the signing key's ID. Anyone may ask for it, so
// a signature is made once per base URL and kept (a few: a proxy's and the
// server's own), not on every request.
func (s *Signer) Manifest(ctx context.Context, baseURL string) (CloudManifest, error) {
	s.mu.Lock()
	m, ok := s.manifests[baseURL]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := s.manifest(ctx, baseURL)
	if err != nil {
		return CloudManifest{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests == nil || len(s.manifests) >= maxManifests {
		s.manifests = map[string]CloudManifest{}
	}
	s.manifests[baseURL] = m
	return m, nil
}

// maxManifests bounds the signed manifests kept: base URLs come from Host
// headers, which anyone may vary.
const maxManifests = 8

func (s *Signer) manifest(ctx context.Context, baseURL string) (CloudManifest, error) {
	keys, err := s.JWKS(ctx)
	if err != nil {
		return CloudManifest{}, err
	}
	doc, err := json.Marshal(keys)
	if err != nil {
		return CloudManifest{}, err
	}
	base := strings.TrimRight(baseURL, "/")
	d := ManifestData{ExternalDsmsCertificates: string(doc), CustomCloudVerificationKey: s.kid,
		Endpoints: ManifestEndpoints{CustomCloudArmEndpoint: base, ExternalDsmsEndpoint: base + "/v1/activation/keys"}}
	kid, sig, err := s.sign(ctx, ManifestMessage(d))
	if err != nil {
		return CloudManifest{}, err
	}
	return CloudManifest{ID: "/providers/Microsoft.AzureStack/cloudManifestFiles/" + kid, Name: kid, Type: "Microsoft.AzureStack/cloudManifestFiles",
		Etag: kid, Properties: CloudManifestProperties{DeploymentData: d, Signature: sig}}, nil
}

// ErrManifest is a manifest that does not verify.
var ErrManifest = errors.New("cloud manifest does not verify")

// VerifyManifest checks a manifest's signature with the keys it carries
// and returns them: the keys that verify activation keys.
func VerifyManifest(m CloudManifest) (JWKS, error) {
	d := m.Properties.DeploymentData
	var keys JWKS
	if err := json.Unmarshal([]byte(d.ExternalDsmsCertificates), &keys); err != nil || len(keys.Keys) == 0 {
		return JWKS{}, fmt.Errorf("%w: it carries no key set", ErrManifest)
	}
	if err := CheckpointVerifier(keys)(d.CustomCloudVerificationKey, ManifestMessage(d), m.Properties.Signature); err != nil {
		return JWKS{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	return keys, nil
}
