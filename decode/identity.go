package decode

import (
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// Identity is what the decoder knows about the local node(s) before reading any traffic.
// Keys decrypt the discv5 sessions the local nodes answer; IDs and Nodes let it unmask
// their inbound discv5 headers and tell which side of a capture is local.
type Identity struct {
	Keys  []*ecdsa.PrivateKey
	IDs   []enode.ID
	Nodes []*enode.Node
}

// AllIDs returns the node IDs of every key, ID and node, first seen first, without
// duplicates.
func (id *Identity) AllIDs() []enode.ID {
	var out []enode.ID
	seen := make(map[enode.ID]bool)
	add := func(x enode.ID) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	for _, k := range id.Keys {
		if k != nil {
			add(enode.PubkeyToIDV4(&k.PublicKey))
		}
	}
	for _, x := range id.IDs {
		add(x)
	}
	for _, n := range id.Nodes {
		if n != nil {
			add(n.ID())
		}
	}
	return out
}

// Errors of the identity parsers. They never quote the text they were given, because
// that text may be (a mistyped) private key.
var (
	ErrNodeKeyHex  = errors.New("node key: want 64 hex characters (32 bytes)")
	ErrNodeKeyFile = errors.New("node key: the argument is neither 64 hex characters nor a readable file")
	ErrNodeKeyBad  = errors.New("node key: not a valid secp256k1 private key")
	ErrNodeID      = errors.New("node ID: want 64 hex characters or an enode:// URL")
	ErrENR         = errors.New(`ENR: want the text form "enr:..."`)
)

// ParseNodeKey parses a node's private key: 64 hex characters (an optional 0x prefix and
// surrounding white space are allowed), or the path of a file holding them, such as
// geth's <datadir>/geth/nodekey. Errors never contain key material.
func ParseNodeKey(s string) (*ecdsa.PrivateKey, error) {
	text := strings.TrimSpace(s)
	// A file whose name happens to be hex ("cafe") is still a file.
	if fi, err := os.Stat(s); looksHex(text) && (err != nil || !fi.Mode().IsRegular()) {
		return parseKeyHex(text)
	}
	data, err := readKeyFile(s)
	// A path is shown only when it looks like one (an argument without a slash or dot
	// is more likely a mistyped key than a file name), and never with a key in it: a
	// key with a stray character or prefix is not hex, so it lands here.
	path := redactHex(s)
	if err != nil {
		if strings.ContainsAny(s, `/\.`) {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: no file %s", ErrNodeKeyFile, path)
			}
			return nil, fmt.Errorf("%w: cannot read %s: %v", ErrNodeKeyFile, path, unwrapPathError(err))
		}
		return nil, ErrNodeKeyFile
	}
	content := strings.TrimSpace(string(data))
	if !looksHex(content) {
		return nil, fmt.Errorf("%w: file %s does not hold hex text (geth's nodekey file holds 64 hex characters)", ErrNodeKeyHex, path)
	}
	key, err := parseKeyHex(content)
	if err != nil {
		return nil, fmt.Errorf("%w (in file %s)", err, path)
	}
	return key, nil
}

// maxKeyFile bounds what is read of a node key file: geth's holds 64 characters, and a
// path such as /dev/zero must not exhaust memory.
const maxKeyFile = 4096

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("more than %d bytes: not a node key file", maxKeyFile)
	}
	return data, nil
}

// hexRun is 8 or more hex characters: a key with a typo or two is still runs of hex,
// and no part of it may show. Paths rarely hold such runs; where one does, it is hidden
// too, which costs only legibility.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{8,}`)

// redactHex hides every long run of hex in s, so that a message quoting an argument
// cannot print a key.
func redactHex(s string) string {
	return hexRun.ReplaceAllString(s, "<hex>")
}

// looksHex reports whether s is non-empty hex, with an optional 0x prefix.
func looksHex(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func parseKeyHex(s string) (*ecdsa.PrivateKey, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) != 64 {
		return nil, fmt.Errorf("%w, got %d", ErrNodeKeyHex, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, ErrNodeKeyHex
	}
	key, err := crypto.ToECDSA(b)
	if err != nil {
		// go-ethereum's message names the reason (zero, above the curve order), not the bytes.
		return nil, ErrNodeKeyBad
	}
	return key, nil
}

// unwrapPathError drops the *os.PathError wrapper, whose text repeats the path.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParseNodeID parses a node ID: 64 hex characters (optional 0x), or an enode:// URL
// whose public key gives the ID.
func ParseNodeID(s string) (enode.ID, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "enode://") {
		n, err := enode.ParseV4(s)
		if err != nil {
			return enode.ID{}, fmt.Errorf("%w: %s", ErrNodeID, redactHex(err.Error()))
		}
		return n.ID(), nil
	}
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(h) != 64 || !looksHex(h) {
		// Not quoted: a private key pasted here by mistake must not be printed.
		return enode.ID{}, fmt.Errorf("%w, got %d characters", ErrNodeID, len(s))
	}
	var id enode.ID
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return enode.ID{}, fmt.Errorf("%w: %v", ErrNodeID, err)
	}
	return id, nil
}

// ParseENR parses a node record in its text form, "enr:" and base64, checking its
// signature.
func ParseENR(s string) (*enode.Node, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "enr:") {
		return nil, ErrENR
	}
	n, err := enode.Parse(enode.ValidSchemes, s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrENR, err)
	}
	return n, nil
}
