package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/echo"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/vault"
)

// CryptoResult is credential sealing and opening, with connec's default
// key kind (age hybrid ML-KEM-768 + X25519).
type CryptoResult struct {
	// Seal is vault.Sealer.Seal of one bearer token: fresh DEK,
	// XChaCha20-Poly1305, DEK wrapped with age.
	Seal Summary `json:"seal"`
	// AEAD is the baseline: the XChaCha20-Poly1305 layer alone on the same
	// plaintext under a fixed key.
	AEAD Summary `json:"aead"`
	// ExecNone is executor.Execute of echo.read without a credential, the
	// baseline the next two are read against (opening is only reachable
	// through the executor).
	ExecNone Summary `json:"exec_none"`
	// ExecCached opens the credential with its DEK in the executor's cache.
	ExecCached Summary `json:"exec_cached"`
	// ExecCold empties the DEK cache before every call: each call unwraps
	// the DEK with age.
	ExecCold Summary `json:"exec_cold"`
}

// OpenCached and OpenCold are the open cost alone (p50 minus ExecNone's).
func (c CryptoResult) OpenCached() time.Duration { return c.ExecCached.P50 - c.ExecNone.P50 }

// OpenCold is the cold open cost alone.
func (c CryptoResult) OpenCold() time.Duration { return c.ExecCold.P50 - c.ExecNone.P50 }

// echoExec returns an executor request for echo.read on a fresh instance.
func echoExec() (connectors.ExecRequest, error) {
	reg, err := connectors.NewRegistry(echo.New())
	if err != nil {
		return connectors.ExecRequest{}, err
	}
	ct, _ := reg.Type("echo")
	op, ok := ct.Op("echo.read")
	if !ok {
		return connectors.ExecRequest{}, fmt.Errorf("echo has no echo.read")
	}
	return connectors.ExecRequest{Type: ct, Op: op, InstanceID: uuid.NewString(), Config: json.RawMessage(`{}`), Args: json.RawMessage(`{"message":"hello"}`)}, nil
}

func (s *suite) measureCrypto(ctx context.Context) error {
	keyFile := filepath.Join(s.cfg.WorkDir, "crypto.key")
	if _, err := vault.GenerateKeyFile(keyFile, true); err != nil {
		return err
	}
	ex, err := executor.New(executor.WithKeyFile(keyFile), executor.WithLogger(quiet))
	if err != nil {
		return err
	}
	recipient, _ := ex.Recipient()
	sealer, err := vault.NewSealer(recipient)
	if err != nil {
		return err
	}
	n := s.cfg.CryptoSamples
	budget := 5 * time.Second
	var r CryptoResult

	token := "bench-bearer-secret-0123456789"
	credID := uuid.NewString()
	req, err := echoExec()
	if err != nil {
		return err
	}
	ad := vault.AD{CredentialID: credID, InstanceID: req.InstanceID, Version: 1}
	xs, errs := timeLoop(n, budget, func(int) error {
		_, err := sealer.Seal(vault.Fields{"token": vault.SecretString(token)}, ad)
		return err
	})
	r.Seal = Summarize(xs, 0, errs)

	adBytes, err := ad.Bytes()
	if err != nil {
		return err
	}
	key := make([]byte, chacha20poly1305.KeySize)
	_, _ = rand.Read(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return err
	}
	plaintext := []byte(`{"token":"` + base64.StdEncoding.EncodeToString([]byte(token)) + `"}`)
	xs, errs = timeLoop(n, budget, func(int) error {
		ct := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
		_, _ = rand.Read(ct)
		_ = aead.Seal(ct, ct[:aead.NonceSize()], plaintext, adBytes)
		return nil
	})
	r.AEAD = Summarize(xs, 0, errs)

	sealed, err := sealer.Seal(vault.Fields{"token": vault.SecretString(token)}, ad)
	if err != nil {
		return err
	}
	exec := func(int) error { _, err := ex.Execute(ctx, req); return err }
	timeLoop(100, time.Second, exec) // warm-up
	xs, errs = timeLoop(n*5, budget, exec)
	r.ExecNone = Summarize(xs, 0, errs)

	req.Credential = &connectors.SealedCredential{ID: credID, InstanceID: req.InstanceID, Kind: "bearer", Version: 1, Sealed: sealed}
	if err := exec(0); err != nil {
		return fmt.Errorf("open the sealed credential: %w", err)
	}
	xs, errs = timeLoop(n*5, budget, exec)
	r.ExecCached = Summarize(xs, 0, errs)
	xs, errs = timeLoop(n, budget, func(int) error { ex.ForgetAll(); return exec(0) })
	r.ExecCold = Summarize(xs, 0, errs)
	if r.Seal.Errors+r.ExecCached.Errors+r.ExecCold.Errors > 0 {
		return fmt.Errorf("seal/open failed: %d/%d/%d errors", r.Seal.Errors, r.ExecCached.Errors, r.ExecCold.Errors)
	}
	s.report.Crypto = r
	s.log.Info("credentials", "seal_p50", r.Seal.P50, "aead_p50", r.AEAD.P50, "open_cached", r.OpenCached(), "open_cold", r.OpenCold())
	return nil
}
