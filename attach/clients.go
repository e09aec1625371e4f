package attach

// Client is an Ethereum client discotrace recognises: how to tell its processes, where
// its command line sets its discovery ports, and where it keeps its node key.
type Client struct {
	Name  string
	Layer string // "execution" or "consensus"
	match func(p *Process) bool
	// discoveryPorts are the UDP ports the process's command line (or environment) sets
	// for discovery, defaults included.
	discoveryPorts func(p *Process) ([]uint16, error)
	// nodeKey says where the process keeps its node key; nil for a client whose key
	// files discotrace has not verified (README: "Attaching to a running node").
	nodeKey func(p *Process) (keyLocation, error)
}

// Clients are the clients Recognise knows, in the order it tries them.
var Clients = []*Client{
	gethClient,
	{Name: "erigon", Layer: "execution", match: named("erigon"), discoveryPorts: portFlag(30303, "port")},
	rethClient,
	{Name: "besu", Layer: "execution",
		match:          func(p *Process) bool { return p.Named("besu") || p.ArgContains("org.hyperledger.besu.Besu") },
		discoveryPorts: portFlag(30303, "p2p-port")},
	{Name: "nethermind", Layer: "execution", match: named("nethermind", "Nethermind.Runner"),
		discoveryPorts: portFlag(30303, "Network.DiscoveryPort", "network-discoveryport")},
	lighthouseClient,
	prysmClient,
	{Name: "teku", Layer: "consensus",
		match:          func(p *Process) bool { return p.Named("teku") || p.ArgContains("tech.pegasys.teku.Teku") },
		discoveryPorts: portFlag(9000, "p2p-udp-port", "p2p-port")},
	{Name: "nimbus", Layer: "consensus", match: named("nimbus_beacon_node", "nimbus"),
		discoveryPorts: portFlag(9000, "udp-port")},
	{Name: "lodestar", Layer: "consensus",
		match:          func(p *Process) bool { return p.Named("lodestar") || p.ArgContains("lodestar") },
		discoveryPorts: portFlag(9000, "discoveryPort", "port")},
}

// Recognise returns the client p runs, or nil.
func Recognise(p *Process) *Client {
	for _, c := range Clients {
		if c.match(p) {
			return c
		}
	}
	return nil
}

func named(names ...string) func(p *Process) bool {
	return func(p *Process) bool { return p.Named(names...) }
}

// portFlag reads the first of flags the command line sets, else def: for clients whose
// discovery port is one flag, or a flag falling back to another.
func portFlag(def uint16, flags ...string) func(p *Process) ([]uint16, error) {
	return func(p *Process) ([]uint16, error) {
		for _, f := range flags {
			if v, ok := flagValue(p.Args, f); ok {
				port, err := parsePort("--"+f, v)
				if err != nil {
					return nil, err
				}
				return []uint16{port}, nil
			}
		}
		return []uint16{def}, nil
	}
}
