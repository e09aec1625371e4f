package attach

import (
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// The tables as the kernel writes them: a listener on 0.0.0.0:30303, a socket
// connected to a DNS server, listeners on [::]:9000 and [::1]:9090.
func TestParseUDPTable(t *testing.T) {
	var got []string
	for _, table := range []struct {
		file string
		ipv6 bool
	}{{"udp", false}, {"udp6", true}} {
		f, err := os.Open(filepath.Join("testdata", table.file))
		if err != nil {
			t.Fatal(err)
		}
		socks, err := ParseUDPTable(f, table.ipv6)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", table.file, err)
		}
		for _, s := range socks {
			got = append(got, fmt.Sprintf("%d port=%d v6=%v connected=%v", s.Inode, s.Port, s.IPv6, s.Connected))
		}
	}
	want := []string{
		"332514 port=30303 v6=false connected=false",
		"332516 port=33008 v6=false connected=true",
		"332515 port=9000 v6=true connected=false",
		"332517 port=9090 v6=true connected=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sockets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseUDPTableRejectsAShortLine(t *testing.T) {
	_, err := ParseUDPTable(strings.NewReader("header\n 1: 00000000:765F 00000000:0000 07\n"), false)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("got %v, want an error naming line 2", err)
	}
}

// A geth started with no flags by a user whose HOME is /home/eth: found by its socket
// on 30303, its key read from /home/eth/.ethereum/geth/nodekey, nothing to warn about.
func TestFindGethWithItsDefaults(t *testing.T) {
	fp := newFakeProc(t)
	key := fp.key(1, "/home/eth/.ethereum/geth/nodekey", 0o600, hexKey)
	fp.process(1, fakeProcess{ns: hostNS, args: []string{"geth"}, exe: "/usr/bin/geth", uid: 1000,
		env: []string{"HOME=/home/eth"}, sockets: []fakeSocket{{inode: 501, port: 30303}, {inode: 502, port: 30303, ipv6: true}}})
	fp.process(2, fakeProcess{ns: hostNS, args: []string{"/lib/systemd/systemd-resolved"}, exe: "/lib/systemd/systemd-resolved",
		sockets: []fakeSocket{{inode: 503, port: 53}}})
	res := fp.find(t, Filter{}, true)
	if len(res.Owners) != 2 || len(res.Nodes) != 1 {
		t.Fatalf("%d owners and %d nodes, want 2 and 1 (geth; not systemd-resolved)", len(res.Owners), len(res.Nodes))
	}
	n := res.Nodes[0]
	checkNode(t, n, "geth", 1, []uint16{30303}, key, "/home/eth/.ethereum/geth/nodekey")
	if len(n.Notes) != 0 {
		t.Errorf("notes %q, want none", n.Notes)
	}
}

// A geth in a container (its own network and mount namespaces): a relative --datadir
// resolved in its working directory, the port from --port, a key file others can read,
// HOME not set. The key is read in the container's filesystem, through /proc/PID/cwd.
func TestFindGethInAContainer(t *testing.T) {
	fp := newFakeProc(t)
	key := fp.key(7, "/srv/node/data/geth/nodekey", 0o644, hexKey+"\n")
	fp.process(7, fakeProcess{ns: containerNS, args: []string{"geth", "--datadir", "data", "--port=30305"}, exe: "/usr/local/bin/geth",
		cwd: "/srv/node", sockets: []fakeSocket{{inode: 701, port: 30305}}})
	n := fp.onlyNode(t, Filter{}, true)
	checkNode(t, n, "geth", 7, []uint16{30305}, key, "data/geth/nodekey")
	if n.NetNS != containerNS {
		t.Errorf("netns %d, want %d", n.NetNS, containerNS)
	}
	if len(n.Notes) != 1 || !strings.Contains(n.Notes[0], "can be read by its group and others (mode -rw-r--r--): chmod 600") {
		t.Errorf("notes %q, want one warning that the key file is readable by others", n.Notes)
	}
}

// Flags from the environment (GETH_DATADIR, GETH_DISCOVERY_PORT), as geth reads them;
// the datadir's ~ expands to the passwd entry's home when HOME is unset; a geth 1.4
// key at <datadir>/nodekey is still used.
func TestFindGethConfiguredByItsEnvironment(t *testing.T) {
	fp := newFakeProc(t)
	key := fp.key(3, "/var/lib/geth/chain/nodekey", 0o400, hexKey)
	fp.file(3, "/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\ngeth:x:117:117::/var/lib/geth:/usr/sbin/nologin\n")
	fp.process(3, fakeProcess{ns: hostNS, args: []string{"/usr/bin/geth", "--port", "30303"}, exe: "/usr/bin/geth", uid: 117,
		env: []string{"GETH_DATADIR=~/chain", "GETH_DISCOVERY_PORT=30399"}, sockets: []fakeSocket{{inode: 301, port: 30399}}})
	n := fp.onlyNode(t, Filter{}, true)
	checkNode(t, n, "geth", 3, []uint16{30399}, key, "/var/lib/geth/chain/nodekey")
}

// When the process listens elsewhere than its command line implies (a --config file
// sets the port), what it listens on is watched, and the note says so.
func TestFindGethListeningElsewhereThanItsCommandLineSays(t *testing.T) {
	fp := newFakeProc(t)
	fp.key(4, "/root/.ethereum/geth/nodekey", 0o600, hexKey)
	fp.process(4, fakeProcess{ns: hostNS, args: []string{"geth", "--config", "/etc/geth.toml"}, exe: "/usr/bin/geth",
		env: []string{"HOME=/root"}, sockets: []fakeSocket{{inode: 401, port: 30311}, {inode: 402, port: 53, connected: true}}})
	n := fp.onlyNode(t, Filter{}, true)
	if !slices.Equal(n.Ports, []uint16{30311}) {
		t.Errorf("ports %v, want [30311] (the connected socket is not a listener)", n.Ports)
	}
	if len(n.Notes) != 1 || !strings.Contains(n.Notes[0], "implies discovery on UDP [30303], but it listens on UDP [30311]") {
		t.Errorf("notes %q, want one saying the ports differ", n.Notes)
	}
}

// A key file that is not a key: the note says so without quoting it; no key is used.
// geth --dev without a datadir has no key file at all.
func TestFindGethWithoutAUsableKey(t *testing.T) {
	fp := newFakeProc(t)
	bad := hexKey[:63] + "z"
	fp.key(5, "/d/geth/nodekey", 0o600, bad)
	fp.process(5, fakeProcess{ns: hostNS, args: []string{"geth", "--datadir=/d"}, exe: "/usr/bin/geth",
		sockets: []fakeSocket{{inode: 551, port: 30303}}})
	fp.process(6, fakeProcess{ns: hostNS, args: []string{"geth", "--dev", "--port", "30306"}, exe: "/usr/bin/geth",
		env: []string{"HOME=/root"}, sockets: []fakeSocket{{inode: 661, port: 30306}}})
	res := fp.find(t, Filter{}, true)
	if len(res.Nodes) != 2 {
		t.Fatalf("%d nodes, want 2", len(res.Nodes))
	}
	for _, n := range res.Nodes {
		if n.Key != nil {
			t.Errorf("pid %d: a key was loaded", n.PID)
		}
		notes := strings.Join(n.Notes, "; ")
		if strings.Contains(notes, bad[:16]) {
			t.Errorf("pid %d: notes quote the key file: %q", n.PID, notes)
		}
		t.Logf("pid %d: %s", n.PID, notes)
	}
	if !strings.Contains(res.Nodes[0].Notes[0], "key file /d/geth/nodekey holds neither 64 hex characters") {
		t.Errorf("notes %q, want the key file's format named", res.Nodes[0].Notes)
	}
	if !strings.Contains(res.Nodes[1].Notes[0], "--dev without --datadir keeps a new node key in memory") {
		t.Errorf("notes %q, want --dev's ephemeral key explained", res.Nodes[1].Notes)
	}
}

// --pid and --netns narrow the search; without keys asked for (--raw), none is read.
func TestFindFilters(t *testing.T) {
	fp := newFakeProc(t)
	fp.key(1, "/root/.ethereum/geth/nodekey", 0o600, hexKey)
	fp.process(1, fakeProcess{ns: hostNS, args: []string{"geth"}, exe: "/usr/bin/geth", env: []string{"HOME=/root"},
		sockets: []fakeSocket{{inode: 101, port: 30303}}})
	fp.process(2, fakeProcess{ns: containerNS, args: []string{"geth", "--port", "30304"}, exe: "/usr/bin/geth", env: []string{"HOME=/root"},
		sockets: []fakeSocket{{inode: 201, port: 30304}}})
	for _, tc := range []struct {
		only Filter
		want int
	}{{Filter{PID: 2}, 2}, {Filter{NetNS: hostNS}, 1}} {
		n := fp.onlyNode(t, tc.only, false)
		if n.PID != tc.want || n.Key != nil || len(n.Notes) != 0 {
			t.Errorf("%+v: pid %d, key loaded %v, notes %q; want pid %d, no key, no notes", tc.only, n.PID, n.Key != nil, n.Notes, tc.want)
		}
	}
}

// A lighthouse beacon node keeps the 32 raw bytes of its key in
// <datadir>/beacon/network/key; its QUIC socket (UDP too) is not discovery.
func TestFindLighthouse(t *testing.T) {
	fp := newFakeProc(t)
	raw, _ := hex.DecodeString(hexKey)
	key := fp.key(9, "/home/lh/.lighthouse/hoodi/beacon/network/key", 0o600, string(raw))
	fp.process(9, fakeProcess{ns: hostNS, args: []string{"lighthouse", "bn", "--network", "hoodi"}, exe: "/usr/bin/lighthouse",
		env: []string{"HOME=/home/lh"}, sockets: []fakeSocket{{inode: 901, port: 9000}, {inode: 902, port: 9001}}})
	n := fp.onlyNode(t, Filter{}, true)
	checkNode(t, n, "lighthouse", 9, []uint16{9000}, key, "/home/lh/.lighthouse/hoodi/beacon/network/key")
}

// prysm without --p2p-static-id keeps no key file: the note says why none is loaded.
// reth keeps its key as hex in <datadir>/discovery-secret.
func TestFindPrysmAndReth(t *testing.T) {
	fp := newFakeProc(t)
	key := fp.key(11, "/data/reth/discovery-secret", 0o600, hexKey)
	fp.process(10, fakeProcess{ns: hostNS, args: []string{"/app/beacon-chain-v6.1.0-linux-amd64", "--datadir", "/data/prysm"},
		exe: "/app/beacon-chain-v6.1.0-linux-amd64", sockets: []fakeSocket{{inode: 1001, port: 12000}}})
	fp.process(11, fakeProcess{ns: hostNS, args: []string{"reth", "node", "--datadir", "/data/reth", "--discovery.port", "30309"},
		exe: "/usr/local/bin/reth", sockets: []fakeSocket{{inode: 1101, port: 30309}}})
	res := fp.find(t, Filter{}, true)
	if len(res.Nodes) != 2 {
		t.Fatalf("%d nodes, want 2", len(res.Nodes))
	}
	prysm, reth := res.Nodes[0], res.Nodes[1]
	if prysm.Client.Name != "prysm" || prysm.Key != nil || !slices.Equal(prysm.Ports, []uint16{12000}) ||
		len(prysm.Notes) != 1 || !strings.Contains(prysm.Notes[0], "without --p2p-static-id") {
		t.Errorf("prysm: client %s, ports %v, key loaded %v, notes %q", prysm.Client.Name, prysm.Ports, prysm.Key != nil, prysm.Notes)
	}
	checkNode(t, reth, "reth", 11, []uint16{30309}, key, "/data/reth/discovery-secret")
}

func TestFlagValue(t *testing.T) {
	args := []string{"geth", "--port", "1", "-port=2", "--datadir=/a", "--nodiscover", "--", "--port", "9"}
	if v, ok := flagValue(args, "port"); !ok || v != "2" {
		t.Errorf("port: %q %v, want the last one before --, 2", v, ok)
	}
	if v, ok := flagValue(args, "datadir"); !ok || v != "/a" {
		t.Errorf("datadir: %q %v", v, ok)
	}
	if _, ok := flagValue(args, "discovery.port"); ok {
		t.Error("discovery.port found where it is not given")
	}
	if !flagSet(args, "nodiscover") || flagSet(args, "dev") || flagSet([]string{"--dev=false"}, "dev") {
		t.Error("boolean flags misread")
	}
}

const (
	hexKey      = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291"
	hostNS      = 4026531840
	containerNS = 4026532999
)

func checkNode(t *testing.T, n *Node, client string, pid int, ports []uint16, key *ecdsa.PrivateKey, source string) {
	t.Helper()
	if n.Client.Name != client || n.PID != pid || !slices.Equal(n.Ports, ports) {
		t.Errorf("client %s pid %d ports %v, want %s %d %v", n.Client.Name, n.PID, n.Ports, client, pid, ports)
	}
	if n.Key == nil {
		t.Fatalf("no key loaded; notes %q", n.Notes)
	}
	if n.ID() != enode.PubkeyToIDV4(&key.PublicKey) || n.KeySource != source {
		t.Errorf("key from %s with ID %s, want the key of %s", n.KeySource, n.ID(), source)
	}
}

// fakeProc is a /proc tree in a temporary directory: per process its cmdline, comm,
// status, environ, exe, ns/net, fd/ socket links, net/udp{,6} (its namespace's tables)
// and a root and cwd leading into a filesystem of its own (rootfs/PID; 0 is the host's).
type fakeProc struct {
	t    *testing.T
	dir  string
	nets map[uint64][]fakeSocket
	pids map[int]fakeProcess
}

type fakeProcess struct {
	ns       uint64
	args     []string
	exe, cwd string
	uid      int
	env      []string
	sockets  []fakeSocket
}

type fakeSocket struct {
	inode           uint64
	port            uint16
	ipv6, connected bool
}

func newFakeProc(t *testing.T) *fakeProc {
	return &fakeProc{t: t, dir: t.TempDir(), nets: map[uint64][]fakeSocket{}, pids: map[int]fakeProcess{}}
}

func (fp *fakeProc) rootfs(pid int) string { return filepath.Join(fp.dir, "rootfs", strconv.Itoa(pid)) }

// file writes a file into pid's filesystem.
func (fp *fakeProc) file(pid int, name string, mode os.FileMode, content string) {
	path := filepath.Join(fp.rootfs(pid), name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fp.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		fp.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		fp.t.Fatal(err)
	}
}

// key writes a key file into pid's filesystem and returns the key it holds: hexKey's,
// which content encodes.
func (fp *fakeProc) key(pid int, name string, mode os.FileMode, content string) *ecdsa.PrivateKey {
	fp.file(pid, name, mode, content)
	k, err := crypto.HexToECDSA(hexKey)
	if err != nil {
		fp.t.Fatal(err)
	}
	return k
}

func (fp *fakeProc) process(pid int, p fakeProcess) {
	fp.pids[pid] = p
	fp.nets[p.ns] = append(fp.nets[p.ns], p.sockets...)
}

// find writes the tree and runs Find over it.
func (fp *fakeProc) find(t *testing.T, only Filter, loadKeys bool) *Result {
	t.Helper()
	proc := filepath.Join(fp.dir, "proc")
	os.RemoveAll(proc)
	for pid, p := range fp.pids {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		mkdirs(t, filepath.Join(dir, "fd"), filepath.Join(dir, "ns"), filepath.Join(dir, "net"), fp.rootfs(pid))
		writeFile(t, filepath.Join(dir, "cmdline"), strings.Join(p.args, "\x00")+"\x00")
		writeFile(t, filepath.Join(dir, "comm"), filepath.Base(p.exe)[:min(15, len(filepath.Base(p.exe)))]+"\n")
		writeFile(t, filepath.Join(dir, "status"), fmt.Sprintf("Name:\tx\nUid:\t%d\t%d\t%d\t%d\n", p.uid, p.uid, p.uid, p.uid))
		writeFile(t, filepath.Join(dir, "environ"), strings.Join(p.env, "\x00"))
		udp, udp6 := fp.tables(p.ns)
		writeFile(t, filepath.Join(dir, "net", "udp"), udp)
		writeFile(t, filepath.Join(dir, "net", "udp6"), udp6)
		symlink(t, p.exe, filepath.Join(dir, "exe"))
		symlink(t, fmt.Sprintf("net:[%d]", p.ns), filepath.Join(dir, "ns", "net"))
		symlink(t, fp.rootfs(pid), filepath.Join(dir, "root"))
		symlink(t, filepath.Join(fp.rootfs(pid), p.cwd), filepath.Join(dir, "cwd"))
		symlink(t, "/dev/null", filepath.Join(dir, "fd", "0"))
		for i, s := range p.sockets {
			symlink(t, fmt.Sprintf("socket:[%d]", s.inode), filepath.Join(dir, "fd", strconv.Itoa(i+3)))
		}
	}
	res, err := Find(proc, only, loadKeys)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (fp *fakeProc) onlyNode(t *testing.T, only Filter, loadKeys bool) *Node {
	t.Helper()
	res := fp.find(t, only, loadKeys)
	if len(res.Nodes) != 1 {
		t.Fatalf("%d nodes found, want 1", len(res.Nodes))
	}
	return res.Nodes[0]
}

// tables renders a namespace's sockets as the kernel's udp and udp6 tables.
func (fp *fakeProc) tables(ns uint64) (udp, udp6 string) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
	udp, udp6 = header, header
	for i, s := range fp.nets[ns] {
		remote := 0
		if s.connected {
			remote = 53
		}
		addr := "00000000"
		if s.ipv6 {
			addr = strings.Repeat("0", 32)
		}
		line := fmt.Sprintf("%5d: %s:%04X %s:%04X 07 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000000000000 0\n",
			i, addr, s.port, addr, remote, s.inode)
		if s.ipv6 {
			udp6 += line
		} else {
			udp += line
		}
	}
	return udp, udp6
}

func mkdirs(t *testing.T, dirs ...string) {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// On the real /proc, the test's own UDP socket is found, owned by the test.
func TestFindOnThisHostSeesOurSocket(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := Find("/proc", Filter{PID: uint32(os.Getpid())}, false)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	if len(res.Owners) != 1 || !slices.Contains(res.Owners[0].UDPPorts(), port) {
		t.Fatalf("owners %+v, want this process with UDP port %d", res.Owners, port)
	}
	if len(res.Nodes) != 0 {
		t.Errorf("the test binary was taken for an Ethereum client: %s", res.Nodes[0].Client.Name)
	}
}
