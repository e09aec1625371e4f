package discv5

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/sha256"

	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// The discv5 (v5.1) cryptography a passive observer needs: header masking, the session
// key agreement of the handshake, the ID signature check and message decryption.
// go-ethereum keeps these unexported in v5wire, so they are written here from the
// spec and checked against its test vectors (vectors_test.go).

const (
	sessionKeySize = 16 // AES-128 session and masking keys
	idSignText     = "discovery v5 identity proof"
	keyAgreeText   = "discovery v5 key agreement"
	signatureSize  = 64 // r || s, no recovery id
)

// newMaskBlock returns the AES block that masks headers sent to id: the key is the
// first 16 bytes of the destination node ID.
func newMaskBlock(id enode.ID) cipher.Block {
	block, err := aes.NewCipher(id[:sessionKeySize])
	if err != nil {
		panic("discv5: AES-128 rejected a 16-byte key: " + err.Error()) // cannot happen
	}
	return block
}

// headerMask holds the state to apply the AES-128-CTR header mask with a cached block
// cipher, without the allocations cipher.NewCTR makes per packet.
type headerMask struct {
	ctr, stream [16]byte
}

// xor applies the keystream of (block, iv) from stream offset off to buf in place.
// The counter is the 128-bit big-endian IV incremented per block, as cipher.NewCTR
// (and so go-ethereum's encoder) does.
func (m *headerMask) xor(block cipher.Block, iv []byte, off int, buf []byte) {
	copy(m.ctr[:], iv)
	addCounter(&m.ctr, uint64(off/16))
	skip := off % 16
	for len(buf) > 0 {
		block.Encrypt(m.stream[:], m.ctr[:])
		n := xorBytes(buf, m.stream[skip:])
		buf = buf[n:]
		skip = 0
		addCounter(&m.ctr, 1)
	}
}

// xorBytes XORs min(len(dst), len(ks)) bytes of ks into dst and returns the count.
func xorBytes(dst, ks []byte) int {
	n := min(len(dst), len(ks))
	for i := 0; i < n; i++ {
		dst[i] ^= ks[i]
	}
	return n
}

// addCounter adds n to the 128-bit big-endian counter.
func addCounter(ctr *[16]byte, n uint64) {
	for i := 15; i >= 0 && n != 0; i-- {
		sum := uint64(ctr[i]) + (n & 0xff)
		ctr[i] = byte(sum)
		n = n>>8 + sum>>8
	}
}

// sessionKeys are the two keys a handshake produces (spec: "initiator-key" encrypts
// what the initiator sends, "recipient-key" what the recipient sends).
type sessionKeys struct {
	initiator, recipient [sessionKeySize]byte
}

// deriveKeys runs the discv5 key agreement: ECDH between one side's secret key and
// the other side's public key (the recipient uses its static key and the initiator's
// ephemeral public key; the initiator uses its ephemeral key and the recipient's static
// public key), then HKDF-SHA256 with the WHOAREYOU challenge-data as salt and
// "discovery v5 key agreement" || initiator ID || recipient ID as info.
func deriveKeys(priv *ecdsa.PrivateKey, pub *ecdsa.PublicKey, initiator, recipient enode.ID, challengeData []byte) (sessionKeys, bool) {
	var keys sessionKeys
	secret := ecdh(priv, pub)
	if secret == nil {
		return keys, false
	}
	info := make([]byte, 0, len(keyAgreeText)+2*len(enode.ID{}))
	info = append(info, keyAgreeText...)
	info = append(info, initiator[:]...)
	info = append(info, recipient[:]...)
	out, err := hkdf.Key(sha256.New, secret, challengeData, string(info), 2*sessionKeySize)
	clear(secret)
	if err != nil {
		return keys, false
	}
	copy(keys.initiator[:], out[:sessionKeySize])
	copy(keys.recipient[:], out[sessionKeySize:])
	clear(out)
	return keys, true
}

// ecdh returns the shared secret as the spec defines it: the compressed encoding of
// the shared point (33 bytes), not only its X coordinate.
func ecdh(priv *ecdsa.PrivateKey, pub *ecdsa.PublicKey) []byte {
	x, y := pub.Curve.ScalarMult(pub.X, pub.Y, priv.D.Bytes())
	if x == nil || (x.Sign() == 0 && y.Sign() == 0) {
		return nil
	}
	secret := make([]byte, 33)
	secret[0] = 0x02 | byte(y.Bit(0))
	math.ReadBits(x, secret[1:])
	return secret
}

// decodeEphemeral parses the handshake's ephemeral public key (33-byte compressed
// secp256k1, the only scheme discv5 "v4" identities use).
func decodeEphemeral(b []byte) (*ecdsa.PublicKey, error) {
	if len(b) != 33 {
		return nil, errBadEphemeralKey
	}
	pub, err := crypto.DecompressPubkey(b)
	if err != nil {
		return nil, errBadEphemeralKey
	}
	return pub, nil
}

// idSignatureHash is what the initiator signs to prove its identity:
// sha256("discovery v5 identity proof" || challenge-data || ephemeral-pubkey || node-id-B).
func idSignatureHash(challengeData, ephPubkey []byte, recipient enode.ID) []byte {
	h := sha256.New()
	h.Write([]byte(idSignText))
	h.Write(challengeData)
	h.Write(ephPubkey)
	h.Write(recipient[:])
	return h.Sum(nil)
}

// verifyIDSignature checks the handshake's id-signature against the initiator's
// static public key.
func verifyIDSignature(pub *ecdsa.PublicKey, sig, challengeData, ephPubkey []byte, recipient enode.ID) bool {
	if len(sig) != signatureSize || pub == nil {
		return false
	}
	hash := idSignatureHash(challengeData, ephPubkey, recipient)
	return crypto.VerifySignature(crypto.CompressPubkey(pub), hash, sig)
}

// newAEAD returns AES-128-GCM (12-byte nonce, 16-byte tag) for a session key.
func newAEAD(key [sessionKeySize]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("discv5: AES-128 rejected a 16-byte key: " + err.Error()) // cannot happen
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("discv5: GCM setup failed: " + err.Error()) // cannot happen with AES
	}
	return aead
}
