package attach

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// reth (paradigmxyz/reth: crates/node/core/src/dirs.rs, its `reth node` reference):
// discv4 on --discovery.port, else 30303 + --instance - 1; discv5, when
// --enable-discv5-discovery, on --discovery.v5.port, else 9200. The key is the hex text
// of the file --p2p-secret-key, else of <datadir>/discovery-secret, the datadir
// --datadir, else $XDG_DATA_HOME/reth/<chain> or ~/.local/share/reth/<chain> (--chain,
// else mainnet).
var rethClient = &Client{
	Name:           "reth",
	Layer:          "execution",
	match:          named("reth"),
	discoveryPorts: rethPorts,
	nodeKey:        rethKey,
}

func rethPorts(p *Process) ([]uint16, error) {
	instance := 1
	if v, ok := flagValue(p.Args, "instance"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return nil, fmt.Errorf("its --instance %q is not from 1 to 200", v)
		}
		instance = n
	}
	ports, err := portFlag(uint16(30303+instance-1), "discovery.port")(p)
	if err != nil || !flagSet(p.Args, "enable-discv5-discovery") {
		return ports, err
	}
	v5, err := portFlag(9200, "discovery.v5.port")(p)
	return append(ports, v5...), err
}

func rethKey(p *Process) (keyLocation, error) {
	if v, ok := flagValue(p.Args, "p2p-secret-key"); ok {
		return keyLocation{File: v}, nil
	}
	if v, ok := flagValue(p.Args, "datadir"); ok {
		dir, err := p.ExpandPath(v)
		return keyLocation{File: filepath.Join(dir, "discovery-secret")}, err
	}
	chain := "mainnet"
	if v, ok := flagValue(p.Args, "chain"); ok {
		chain = v
	}
	if strings.ContainsAny(chain, "/.") {
		return keyLocation{}, errors.New("its --chain is a chain specification file, whose data directory is named after its chain ID, which discotrace does not read")
	}
	base := p.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := p.Home()
		if err != nil {
			return keyLocation{}, errors.New("no --datadir, and its default ~/.local/share/reth is unknown: " + err.Error())
		}
		base = filepath.Join(home, ".local", "share")
	}
	return keyLocation{File: filepath.Join(base, "reth", chain, "discovery-secret")}, nil
}
