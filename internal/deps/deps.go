// Package deps pins the modules the packages being written need, so that parallel work
// does not race on go.mod. Removed once every import below is used for real.
package deps

import (
	_ "github.com/cilium/ebpf"
	_ "github.com/cilium/ebpf/btf"
	_ "github.com/cilium/ebpf/features"
	_ "github.com/cilium/ebpf/link"
	_ "github.com/cilium/ebpf/ringbuf"
	_ "github.com/cilium/ebpf/rlimit"
	_ "github.com/ethereum/go-ethereum/crypto"
	_ "github.com/ethereum/go-ethereum/p2p/discover"
	_ "github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	_ "github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	_ "github.com/ethereum/go-ethereum/p2p/enode"
	_ "github.com/ethereum/go-ethereum/p2p/enr"
	_ "github.com/ethereum/go-ethereum/rlp"
	_ "github.com/gopacket/gopacket"
	_ "github.com/gopacket/gopacket/layers"
	_ "github.com/gopacket/gopacket/pcapgo"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/sys/unix"
)
