package discv5

import (
	"errors"
)

// caseError is a decoding error that also belongs to a broader class (errors.Is matches
// both): e.g. a random first packet is one case of "no session key".
type caseError struct {
	msg   string
	class error
}

func (e *caseError) Error() string { return e.msg }
func (e *caseError) Unwrap() error { return e.class }

// Why a discv5 packet could not be (fully) decoded. These are the texts of disc.error.
var (
	ErrNoKey = errors.New("no session key: the session started before the capture or the node key is unknown")
	// ErrRandomPacket is a case of ErrNoKey: a hint from the size alone, which a short
	// message of a session shares (a TALKRESP of 91 bytes); the decoder's trackers
	// know a first packet by the WHOAREYOU that echoes its nonce.
	ErrRandomPacket = &caseError{"no session key; 20 bytes, like go-ethereum's random first packet of a handshake (it is one if a WHOAREYOU echoes its nonce)", ErrNoKey}
	// errInitiatorSide is a case of ErrNoKey.
	errInitiatorSide = &caseError{"handshake sent by a local node: its keys come from an ephemeral secret that is never stored; give the remote node's key (--nodekey) to decrypt the session", ErrNoKey}
	// errNoChallenge is a case of ErrNoKey.
	// errLocalSession is a case of ErrNoKey: a message of a session whose handshake a
	// local node sent, in the capture.
	errLocalSession = &caseError{"session set up by a local node's HANDSHAKE: its keys come from an ephemeral secret that is never stored; give the remote node's key (--nodekey) to decrypt it", ErrNoKey}
	errNoChallenge  = &caseError{"no session key: the WHOAREYOU this handshake answers was not captured, and its challenge-data is needed to derive the keys", ErrNoKey}
	// errSessionMismatch: keys are known but do not fit.
	errSessionMismatch = errors.New("cannot decrypt with the session keys seen in the capture: the sender lost its session or a newer handshake was not captured")
	// errOtherAddress comes with the decrypted message.
	errOtherAddress = errors.New("decrypted with the keys of a session these nodes set up at other addresses: go-ethereum binds sessions to the address, so the recipient will answer WHOAREYOU")

	errBadHandshake = errors.New("invalid handshake")
	// The following are cases of errBadHandshake.
	errBadIDSignature   = &caseError{"invalid handshake: the id-signature does not verify with the initiator's key (the recipient rejects it)", errBadHandshake}
	errBadRecord        = &caseError{"invalid handshake: bad ENR", errBadHandshake}
	errBadEphemeralKey  = &caseError{"invalid handshake: bad ephemeral public key", errBadHandshake}
	errHandshakeDecrypt = &caseError{"invalid handshake: the message does not decrypt with the keys derived from the captured challenge", errBadHandshake}

	// errLateHandshake comes with the decrypted message. Each Decoder says it with its
	// handshake timeout (Decoder.lateHandshake), as a case of this error.
	errLateHandshake = errors.New("handshake answers a WHOAREYOU sent longer ago than the handshake timeout")

	errBadVersion = errors.New("unsupported discv5 header version")
	errBadFlag    = errors.New("invalid discv5 header flag")
	errTooShort   = errors.New("discv5 message packet too short")
	errAuthSize   = errors.New("discv5 authdata size does not fit the packet")
	ErrTruncated  = errors.New("payload truncated by the capture's snap length: raise it to decode the whole packet")
	errBadMessage = errors.New("malformed discv5 message")
)
