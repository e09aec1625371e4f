package attach

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// geth, as go-ethereum v1.17 sets it up (cmd/utils/flags.go, node/config.go,
// node/defaults.go, internal/flags): discovery listens on --discovery.port, else on
// --port, else 30303; the node key is --nodekeyhex, else the file --nodekey, else
// <datadir>/geth/nodekey (<datadir>/nodekey where geth 1.4 left one), the datadir being
// --datadir, else ~/.ethereum (with /sepolia, /holesky or /hoodi for those networks),
// none with --dev. Every flag can also be set as GETH_<FLAG> in its environment.
var gethClient = &Client{
	Name:           "geth",
	Layer:          "execution",
	match:          named("geth"),
	discoveryPorts: gethPorts,
	nodeKey:        gethKey,
}

func gethPorts(p *Process) ([]uint16, error) {
	for _, f := range []string{"discovery.port", "port"} {
		if v, ok := gethFlag(p, f); ok {
			port, err := parsePort("--"+f, v)
			if err != nil {
				return nil, err
			}
			return []uint16{port}, nil
		}
	}
	return []uint16{30303}, nil
}

func gethKey(p *Process) (keyLocation, error) {
	if v, ok := gethFlag(p, "nodekeyhex"); ok {
		return keyLocation{Flag: "--nodekeyhex", Text: v}, nil
	}
	if v, ok := gethFlag(p, "nodekey"); ok {
		return keyLocation{File: v}, nil
	}
	dir, err := gethDataDir(p)
	if err != nil {
		return keyLocation{}, err
	}
	if dir == "" {
		return keyLocation{None: "geth --dev without --datadir keeps a new node key in memory only"}, nil
	}
	legacy := filepath.Join(dir, "nodekey")
	if fi, err := os.Stat(p.Path(legacy)); err == nil && fi.Mode().IsRegular() {
		return keyLocation{File: legacy}, nil
	}
	return keyLocation{File: filepath.Join(dir, "geth", "nodekey")}, nil
}

// gethDataDir is the process's data directory; "" for --dev without one.
func gethDataDir(p *Process) (string, error) {
	if v, ok := gethFlag(p, "datadir"); ok {
		return p.ExpandPath(v)
	}
	if gethBool(p, "dev") {
		return "", nil
	}
	home, err := p.Home()
	if err != nil {
		return "", errors.New("no --datadir, and its default ~/.ethereum is unknown: " + err.Error())
	}
	dir := filepath.Join(home, ".ethereum")
	for _, network := range []string{"sepolia", "holesky", "hoodi"} {
		if gethBool(p, network) {
			return filepath.Join(dir, network), nil
		}
	}
	return dir, nil
}

// gethFlag returns a flag's value from the command line, else from the environment
// variable geth reads it from (GETH_DISCOVERY_PORT for --discovery.port).
func gethFlag(p *Process, name string) (string, bool) {
	if v, ok := flagValue(p.Args, name); ok {
		return v, true
	}
	v := p.Getenv(gethEnvVar(name))
	return v, v != ""
}

func gethBool(p *Process, name string) bool {
	if flagSet(p.Args, name) {
		return true
	}
	on, _ := strconv.ParseBool(p.Getenv(gethEnvVar(name)))
	return on
}

func gethEnvVar(flag string) string {
	return "GETH_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flag))
}
