package vault_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/vault"
)

// blocks splits a key file into its identities' three-line blocks, checking
// the standard age key-file layout without parsing any key.
func blocks(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	var cur []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		cur = append(cur, line)
		if len(cur) == 3 {
			out = append(out, cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("trailing partial block %d lines", len(cur))
	}
	return out
}

func checkBlock(t *testing.T, b []string, recipient string, hybrid bool) {
	t.Helper()
	created, ok := strings.CutPrefix(b[0], "# created: ")
	if !ok {
		t.Fatalf("line 1 = %q", b[0])
	}
	if _, err := time.Parse(time.RFC3339, created); err != nil {
		t.Fatalf("created: %v", err)
	}
	if b[1] != "# public key: "+recipient {
		t.Fatalf("line 2 = %.40q…, want the public key", b[1])
	}
	prefix, rprefix := "AGE-SECRET-KEY-1", "age1"
	if hybrid {
		prefix, rprefix = "AGE-SECRET-KEY-PQ-1", "age1pq1"
	}
	if !strings.HasPrefix(b[2], prefix) || !strings.HasPrefix(recipient, rprefix) {
		t.Fatalf("identity line or recipient of the wrong kind (hybrid=%v)", hybrid)
	}
	if _, err := vault.NewSealer(recipient); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateKeyFile(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new", "keys")
			path := filepath.Join(dir, "connec.key")
			r, err := vault.GenerateKeyFile(path, k.hybrid)
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("file mode %v", st.Mode())
			}
			if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
				t.Fatalf("dir mode %v", st.Mode())
			}
			b := blocks(t, path)
			if len(b) != 1 {
				t.Fatalf("%d identities", len(b))
			}
			checkBlock(t, b[0], r, k.hybrid)

			before, _ := os.ReadFile(path)
			if _, err := vault.GenerateKeyFile(path, k.hybrid); !errors.Is(err, vault.ErrKeyFileExists) {
				t.Fatalf("second generate: %v, want ErrKeyFileExists", err)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Fatal("existing key file changed")
			}
		})
	}
}

func TestAppendIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "connec.key")
	r1, err := vault.GenerateKeyFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := vault.AppendIdentity(path, true)
	if err != nil {
		t.Fatal(err)
	}
	// A file whose last line lacks its newline still gets a clean block.
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.TrimRight(string(data), "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	r3, err := vault.AppendIdentity(path, true)
	if err != nil {
		t.Fatal(err)
	}
	b := blocks(t, path)
	if len(b) != 3 {
		t.Fatalf("%d identities, want 3", len(b))
	}
	checkBlock(t, b[0], r1, false)
	checkBlock(t, b[1], r2, true)
	checkBlock(t, b[2], r3, true)
	if r1 == r2 || r2 == r3 {
		t.Fatal("identities repeat")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode changed to %v", st.Mode())
	}
}

func TestAppendIdentityRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := vault.AppendIdentity(filepath.Join(dir, "missing.key"), true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(dir, "connec.key")
	if _, err := vault.GenerateKeyFile(path, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	_, err := vault.AppendIdentity(path, true)
	if !errors.Is(err, vault.ErrInsecureKeyFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable file: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("insecure key file was written")
	}
}

// Several connec processes starting at once on a fresh data dir each try
// to create the key: exactly one wins, and nobody ever reads the file half
// written (a reader that sees it sees the whole key).
func TestGenerateKeyFileConcurrently(t *testing.T) {
	for round := 0; round < 20; round++ {
		path := filepath.Join(t.TempDir(), "connec.key")
		var wg sync.WaitGroup
		recipients := make([]string, 4)
		errs := make([]error, 4)
		for i := range recipients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				recipients[i], errs[i] = vault.GenerateKeyFile(path, false)
			}()
		}
		stop := make(chan struct{})
		var seen []string
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for {
				if b, err := os.ReadFile(path); err == nil {
					seen = append(seen, string(b))
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		wg.Wait()
		close(stop)
		<-readerDone
		winner := ""
		for i, err := range errs {
			switch {
			case err == nil && winner == "":
				winner = recipients[i]
			case err == nil:
				t.Fatalf("round %d: two generators both created the key", round)
			case !errors.Is(err, vault.ErrKeyFileExists):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: nobody created the key: %v", round, errs)
		}
		final, _ := os.ReadFile(path)
		for _, s := range seen {
			if s != string(final) {
				t.Fatalf("round %d: a reader saw the key file half written: %q", round, s)
			}
		}
		checkBlock(t, blocks(t, path)[0], winner, false)
	}
}
