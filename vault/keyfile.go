package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"filippo.io/age"
)

// GenerateKeyFile writes a new age identity to a new key file at path and
// returns its public recipient. hybrid selects the post-quantum hybrid kind
// (the default connec uses; see the package doc) over X25519.
//
// The file is created with mode 0600 (its directory, if missing, with 0700)
// and is never overwritten: an existing path gives ErrKeyFileExists. It is in
// the standard age key-file format:
//
//	# created: 2006-01-02T15:04:05Z
//	# public key: age1pq1…
//	AGE-SECRET-KEY-PQ-1…
func GenerateKeyFile(path string, hybrid bool) (recipient string, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("vault: create key directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("%w: %s (refusing to overwrite a key; to rotate, append a new identity)", ErrKeyFileExists, path)
	}
	// Written whole under a temporary name (0600), then linked into place:
	// a process that finds the key file (several connec processes may
	// start at once on a fresh data dir) finds all of it, and linking
	// fails rather than overwrite a key another process put there first.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return "", fmt.Errorf("vault: create key file: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	recipient, err = writeIdentity(f, hybrid, "")
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("vault: write key file: %w", cerr)
	}
	if err != nil {
		return "", err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("%w: %s (refusing to overwrite a key; to rotate, append a new identity)", ErrKeyFileExists, path)
	} else if err != nil {
		return "", fmt.Errorf("vault: create key file: %w", err)
	}
	syncDir(dir)
	return recipient, nil
}

// syncDir makes a new directory entry durable, best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// AppendIdentity adds a new identity to the existing key file at path and
// returns its public recipient. The new identity comes last, which makes it
// the current key for new seals once the keyring reloads the file; the older
// identities stay so existing rows keep opening until they are rewrapped
// (live rotation). The file must exist and be accessible to its owner only.
// The existing contents are not read.
func AppendIdentity(path string, hybrid bool) (recipient string, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", fmt.Errorf("vault: open key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			recipient, err = "", fmt.Errorf("vault: write key file: %w", cerr)
		}
	}()
	if err := checkKeyFileMode(f, path); err != nil {
		return "", err
	}
	// The leading newline ends a last line that lacks one; a blank line
	// between identities is otherwise harmless.
	return writeIdentity(f, hybrid, "\n")
}

// checkKeyFileMode refuses a key file that is not a regular file or that
// group or others can access.
func checkKeyFileMode(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("vault: stat key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("vault: key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; run: chmod 600 %s", ErrInsecureKeyFile, path, perm, path)
	}
	return nil
}

// writeIdentity generates an identity and writes it to f, in one write,
// after prefix.
func writeIdentity(f *os.File, hybrid bool, prefix string) (recipient string, err error) {
	protect(func() {
		var block []byte
		defer func() { clear(block) }()
		var identity fmt.Stringer
		if hybrid {
			id, gerr := age.GenerateHybridIdentity()
			if gerr != nil {
				err = fmt.Errorf("vault: generate key: %w", gerr)
				return
			}
			identity, recipient = id, id.Recipient().String()
		} else {
			id, gerr := age.GenerateX25519Identity()
			if gerr != nil {
				err = fmt.Errorf("vault: generate key: %w", gerr)
				return
			}
			identity, recipient = id, id.Recipient().String()
		}
		// Plain appends into one buffer of exact size: fmt would leave a
		// copy of the private key in its pooled buffers.
		key := identity.String()
		created := time.Now().Format(time.RFC3339)
		block = make([]byte, 0, len(prefix)+len("# created: \n# public key: \n\n")+len(created)+len(recipient)+len(key))
		block = append(block, prefix...)
		block = append(block, "# created: "...)
		block = append(block, created...)
		block = append(block, "\n# public key: "...)
		block = append(block, recipient...)
		block = append(block, '\n')
		block = append(block, key...)
		block = append(block, '\n')
		if _, werr := f.Write(block); werr != nil {
			err = fmt.Errorf("vault: write key file: %w", werr)
			return
		}
		if serr := f.Sync(); serr != nil {
			err = fmt.Errorf("vault: sync key file: %w", serr)
		}
	})
	if err != nil {
		return "", err
	}
	return recipient, nil
}
