package attach

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// lighthouse (sigp/lighthouse: common/directory, lighthouse_network's
// load_private_key): discovery on --discovery-port, else --port, else 9000 (IPv6:
// --discovery-port6, else --port6, else 9090); the key is the 32 raw bytes of
// <network-dir>/key, the network directory being --network-dir, else
// <datadir>/beacon/network, the datadir --datadir (-d), else ~/.lighthouse/<network>
// (--network, "custom" with --testnet-dir, else mainnet).
var lighthouseClient = &Client{
	Name:  "lighthouse",
	Layer: "consensus",
	match: named("lighthouse"),
	discoveryPorts: func(p *Process) ([]uint16, error) {
		v4, err := portFlag(9000, "discovery-port", "port")(p)
		if err != nil {
			return nil, err
		}
		v6, err := portFlag(9090, "discovery-port6", "port6")(p)
		return append(v4, v6...), err
	},
	nodeKey: func(p *Process) (keyLocation, error) {
		if v, ok := flagValue(p.Args, "network-dir"); ok {
			dir, err := p.ExpandPath(v)
			return keyLocation{File: filepath.Join(dir, "key")}, err
		}
		dir, err := lighthouseDataDir(p)
		if err != nil {
			return keyLocation{}, err
		}
		return keyLocation{File: filepath.Join(dir, "beacon", "network", "key")}, nil
	},
}

func lighthouseDataDir(p *Process) (string, error) {
	for _, f := range []string{"datadir", "d"} {
		if v, ok := flagValue(p.Args, f); ok {
			return p.ExpandPath(v)
		}
	}
	network := "mainnet"
	if v, ok := flagValue(p.Args, "network"); ok {
		network = v
	} else if _, ok := flagValue(p.Args, "testnet-dir"); ok {
		network = "custom"
	}
	home, err := p.Home()
	if err != nil {
		return "", errors.New("no --datadir, and its default ~/.lighthouse is unknown: " + err.Error())
	}
	return filepath.Join(home, ".lighthouse", network), nil
}

// prysm's beacon node (OffchainLabs/prysm: beacon-chain/p2p/utils.go privKey):
// discovery on --p2p-udp-port, else 12000; the key is the hex text of the file
// --p2p-priv-key, else of <datadir>/network-keys (--datadir, else ~/.eth2), which
// prysm writes only with --p2p-static-id: without it and without the file, every start
// makes a new key.
var prysmClient = &Client{
	Name:  "prysm",
	Layer: "consensus",
	match: func(p *Process) bool {
		// prysm.sh runs the release binary under its versioned name,
		// beacon-chain-v6.0.0-linux-amd64.
		for _, name := range []string{p.Exe, p.Comm, first(p.Args)} {
			if strings.HasPrefix(path.Base(name), "beacon-chain") {
				return true
			}
		}
		return false
	},
	discoveryPorts: portFlag(12000, "p2p-udp-port"),
	nodeKey: func(p *Process) (keyLocation, error) {
		if v, ok := flagValue(p.Args, "p2p-priv-key"); ok {
			return keyLocation{File: v}, nil
		}
		dir := "~/.eth2"
		if v, ok := flagValue(p.Args, "datadir"); ok {
			dir = v
		}
		dir, err := p.ExpandPath(dir)
		if err != nil {
			return keyLocation{}, err
		}
		file := filepath.Join(dir, "network-keys")
		if _, err := os.Stat(p.Path(file)); errors.Is(err, os.ErrNotExist) && !flagSet(p.Args, "p2p-static-id") {
			return keyLocation{None: "prysm without --p2p-static-id or --p2p-priv-key makes a new node key at each start and keeps it in memory"}, nil
		}
		return keyLocation{File: file}, nil
	},
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
