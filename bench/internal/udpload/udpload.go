// Package udpload is the load the benchmarks put on loopback UDP: a receiving socket on
// 127.0.0.1, and bursts of datagrams sent to it from one thread while another reads them,
// timed from the first send to the last read, with each thread's CPU time. It lets the
// benchmarks that compare setups (bench/loopback, bench/hookcost) measure with the same
// load, so their figures can be set side by side.
package udpload

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Receiver is a UDP socket on 127.0.0.1 that the benchmark sends to.
type Receiver struct {
	FD     int
	Port   uint16
	Cookie uint64 // socket cookie: ties the tracer's read events to this socket
}

// OpenReceiver opens a Receiver on a free port. It needs root (CAP_NET_ADMIN) for its
// receive buffer.
func OpenReceiver() (*Receiver, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// A buffer large enough that the reader never falls behind into drops: the benchmark
	// measures tracing cost, not buffer overflow.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set a 64 MiB receive buffer (needs root): %w", err)
	}
	// The reader's way out: a read that waits this long means the sender is done.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Receiver{FD: fd, Port: uint16(sa.(*unix.SockaddrInet4).Port), Cookie: cookie}, nil
}

// PinCPUs, when set, keeps the sender on CPU 0 and the reader on CPU 1 (of a machine
// with at least two): the scheduler moving them around is most of the noise otherwise.
var PinCPUs = true

// Pin binds the calling (locked) thread to cpu.
func Pin(cpu int) {
	if !PinCPUs || runtime.NumCPU() < 2 {
		return
	}
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
}

// Unpin lets the calling thread run on every CPU again, before it goes back to the pool.
func Unpin() {
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	unix.SchedSetaffinity(0, &set)
}

// ThreadCPU is the CPU time the calling thread has used so far.
func ThreadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// Measurement is one burst: how many datagrams were sent and arrived, and how long from
// the first send to the last read.
type Measurement struct {
	Sent, Received int
	Elapsed        time.Duration
	// CPU time of the sending thread (which also runs loopback's receive softirq) and of
	// the reading thread: unlike the rate, barely moved by other load on the machine.
	SendCPU, ReadCPU time.Duration
}

// Rate is the datagrams that arrived per second.
func (m Measurement) Rate() float64 { return float64(m.Received) / m.Elapsed.Seconds() }

// CPUNsPerDatagram is the sending and reading threads' CPU time per datagram.
func (m Measurement) CPUNsPerDatagram() (send, read float64) {
	return float64(m.SendCPU.Nanoseconds()) / float64(m.Received), float64(m.ReadCPU.Nanoseconds()) / float64(m.Received)
}

// Blast sends n datagrams of size bytes to rx from a fresh connected socket on CPU 0
// while a thread on CPU 1 reads them, and times it.
func Blast(rx *Receiver, n, size int) (Measurement, error) {
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Measurement{}, err
	}
	defer unix.Close(tx)
	if err := unix.Connect(tx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(rx.Port)}); err != nil {
		return Measurement{}, err
	}

	type readResult struct {
		count int
		last  time.Time
		cpu   time.Duration
		err   error
	}
	done := make(chan readResult, 1)
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		Pin(1)
		defer Unpin()
		buf := make([]byte, 65536)
		var r readResult
		cpu0 := ThreadCPU()
		defer func() { r.cpu = ThreadCPU() - cpu0; done <- r }()
		close(ready)
		for r.count < n {
			if _, err := unix.Read(rx.FD, buf); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue // the Go runtime's preemption signal; SO_RCVTIMEO reads do not restart
				}
				if !errors.Is(err, unix.EAGAIN) {
					r.err = err
				}
				break
			}
			r.count++
			r.last = time.Now()
		}
	}()
	<-ready

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	Pin(0)
	defer Unpin()
	payload := make([]byte, size)
	cpu0 := ThreadCPU()
	start := time.Now()
	for i := 0; i < n; {
		if _, err := unix.Write(tx, payload); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return Measurement{}, fmt.Errorf("datagram %d: %w", i, err)
		}
		i++
	}
	sendCPU := ThreadCPU() - cpu0
	r := <-done
	if r.err != nil {
		return Measurement{}, r.err
	}
	if r.count == 0 {
		return Measurement{}, errors.New("nothing arrived")
	}
	return Measurement{Sent: n, Received: r.count, Elapsed: r.last.Sub(start), SendCPU: sendCPU, ReadCPU: r.cpu}, nil
}
