package tracer

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// busyWait is how long a reader that is not asleep waits once it has read the ring
// empty: while each look finds records the programs never wake it (see submit in
// bpf/discotrace.bpf.c), so under load an event waits at most about this long. It waits
// on the runtime's timer, not in epoll: a thread blocked in a system call keeps its P,
// and when every P is busy sysmon takes it back after 20 us, which costs a handoff, a
// futex wakeup and a context switch each time.
const busyWait = time.Millisecond

// busyPoll bounds the ring read of a reader that is not asleep. It reads only when the
// ring holds a record, so the read returns at once; the bound is a backstop.
const busyPoll = 2 * time.Millisecond

// sleepFlag is the reader's side of the programs' wakeup protocol: the reader_sleeping
// map, mapped into this process so that storing it costs no system call.
type sleepFlag struct {
	mem  []byte
	flag *uint32
}

func mapSleepFlag(m *ebpf.Map) (*sleepFlag, error) {
	mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map reader_sleeping: %w", err)
	}
	return &sleepFlag{mem: mem, flag: (*uint32)(unsafe.Pointer(&mem[0]))}, nil
}

// set stores v with a full barrier (sync/atomic is sequentially consistent), so that a
// load of the ring's producer position after it cannot be served before it.
func (f *sleepFlag) set(v uint32) { atomic.StoreUint32(f.flag, v) }

func (f *sleepFlag) close() error { return unix.Munmap(f.mem) }
