package netlab

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Counters are the kernel's SNMP and extended counters of one network namespace, named
// as nstat names them: the table prefix followed by the field, e.g. "UdpRcvbufErrors",
// "UdpInCsumErrors", "IpReasmTimeout", "IpReasmFails", "IcmpOutTimeExcds",
// "IcmpMsgOutType11", "Udp6InCsumErrors", "TcpExtTCPAbortOnData".
type Counters map[string]int64

// Names of counters the scenarios check.
const (
	UdpInDatagrams      = "UdpInDatagrams"
	UdpNoPorts          = "UdpNoPorts"
	UdpInErrors         = "UdpInErrors"
	UdpRcvbufErrors     = "UdpRcvbufErrors"
	UdpInCsumErrors     = "UdpInCsumErrors"
	IpReasmReqds        = "IpReasmReqds"
	IpReasmOKs          = "IpReasmOKs"
	IpReasmFails        = "IpReasmFails"
	IpReasmTimeout      = "IpReasmTimeout"
	IcmpOutTimeExcds    = "IcmpOutTimeExcds"
	IcmpOutDestUnreachs = "IcmpOutDestUnreachs"
	IcmpInTimeExcds     = "IcmpInTimeExcds"
)

// counterFiles are read relative to /proc/thread-self/net: the calling thread's namespace.
// (/proc/net is /proc/self/net, the namespace of the thread group leader, which is not
// the namespace a thread joined with setns.)
var counterFiles = []string{"snmp", "netstat", "snmp6"}

// ReadCounters reads the counters of the calling thread's network namespace. Inside a
// Netns.Do function that is the namespace's; use Netns.Counters from elsewhere.
func ReadCounters() (Counters, error) {
	c := Counters{}
	for _, name := range counterFiles {
		path := "/proc/thread-self/net/" + name
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		if name == "snmp6" {
			err = parseNameValueLines(b, c)
		} else {
			err = parseHeaderValuePairs(b, c)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
	}
	return c, nil
}

// parseHeaderValuePairs parses /proc/net/snmp and /proc/net/netstat: per table, a line of
// field names and a line of values, both starting with the table's prefix ("Udp:").
func parseHeaderValuePairs(b []byte, c Counters) error {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines)%2 != 0 {
		return fmt.Errorf("odd number of lines (%d): names and values do not pair up", len(lines))
	}
	for i := 0; i < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 || names[0] != values[0] {
			return fmt.Errorf("line %d: names %q and values %q do not pair up", i+1, lines[i], lines[i+1])
		}
		prefix := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			v, err := strconv.ParseInt(values[j], 10, 64)
			if err != nil {
				return fmt.Errorf("%s%s: %w", prefix, names[j], err)
			}
			c[prefix+names[j]] = v
		}
	}
	return nil
}

// parseNameValueLines parses /proc/net/snmp6: one "Name value" pair a line.
func parseNameValueLines(b []byte, c Counters) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return fmt.Errorf("line %q is not a name and a value", sc.Text())
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", f[0], err)
		}
		c[f[0]] = v
	}
	return sc.Err()
}

// Since returns c minus before for every counter that changed.
func (c Counters) Since(before Counters) Counters {
	d := Counters{}
	for k, v := range c {
		if diff := v - before[k]; diff != 0 {
			d[k] = diff
		}
	}
	return d
}

// String lists the counters sorted by name, one "Name value" a line: for test logs.
func (c Counters) String() string {
	names := make([]string, 0, len(c))
	for k := range c {
		names = append(names, k)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, k := range names {
		fmt.Fprintf(&sb, "%s %d\n", k, c[k])
	}
	return sb.String()
}

// WaitCounters polls the namespace's counters until done reports true for the change
// since before, or timeout passes; it returns the last change seen. Kernel timers
// (fragment expiry) and softirq processing make counters move a little after the
// packets that cause them were sent.
func (ns *Netns) WaitCounters(before Counters, timeout time.Duration, done func(delta Counters) bool) (Counters, error) {
	deadline := time.Now().Add(timeout)
	for {
		now, err := ns.Counters()
		if err != nil {
			return nil, err
		}
		delta := now.Since(before)
		if done(delta) || time.Now().After(deadline) {
			return delta, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
