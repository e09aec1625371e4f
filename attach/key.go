package attach

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/ethereum/go-ethereum/crypto"
)

// keyLocation is where a client keeps its node key, as its command line and documented
// defaults say: File, Flag or None is set.
type keyLocation struct {
	File string // a file, as the process names it (absolute, or relative to its directory)
	// Flag names the command-line flag or environment variable that holds the key
	// itself (geth's --nodekeyhex), Text.
	Flag, Text string
	// None says why there is no key to load: the client makes a new one at each start.
	None string
}

// errKeyFormat is a key file in none of the formats clients write. The error never
// quotes the file: it may hold a key.
var errKeyFormat = errors.New("holds neither 64 hex characters (as geth, reth and prysm write it) nor 32 raw bytes (as lighthouse does)")

// parseKey reads a secp256k1 node key as clients store it: hex text, with or without
// 0x and surrounding white space (geth, reth, prysm), or the 32 raw bytes (lighthouse).
func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	text := bytes.TrimPrefix(bytes.TrimSpace(b), []byte("0x"))
	raw := make([]byte, 32)
	switch {
	case len(text) == 64:
		if _, err := hex.Decode(raw, text); err != nil {
			return nil, errKeyFormat
		}
	case len(b) == 32:
		copy(raw, b)
	default:
		return nil, errKeyFormat
	}
	key, err := crypto.ToECDSA(raw)
	if err != nil {
		return nil, errors.New("is not a valid secp256k1 private key")
	}
	return key, nil
}

// readKeyFile loads the key file a process names, through its root, and returns the
// file's permission bits too.
func readKeyFile(p *Process, name string) (*ecdsa.PrivateKey, fs.FileMode, error) {
	path := p.Path(name)
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("no key file %s", name)
		}
		return nil, 0, fmt.Errorf("cannot read key file %s: %w", name, errors.Unwrap(err))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read key file %s: %w", name, errors.Unwrap(err))
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, 0, fmt.Errorf("key file %s %w", name, err)
	}
	return key, fi.Mode().Perm(), nil
}
