package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/pcapout"
	"github.com/discotrace/discotrace/tracer"
)

// pcapOutFlag is --pcap-out FILE of trace and decode: the datagrams and ICMP errors also
// written as pcapng, for Wireshark, each with its decoded summary as a packet comment.
type pcapOutFlag struct{ path string }

func (f *pcapOutFlag) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.path, "pcap-out", "", "also write every datagram and ICMP error to `FILE` as pcapng, for Wireshark (mode 0600, replaced if it exists), each with its decoded packet, process and the failures citing it as a packet comment; packets are written a few seconds late, when the failures citing them are decided")
}

// openForTrace opens the file for trace: packets wait for the failures that cite them as
// long as the decoder's verdicts can take (none with --raw), by the wall clock.
func (f *pcapOutFlag) openForTrace(tf *traceFlags) (*pcapOutput, error) {
	opts := pcapout.Options{Clock: time.Now}
	if !tf.raw {
		opts.Hold = verdictHold(&tf.decoderFlags) + tracer.DefaultLostInterval + tracer.MaxDeliveryDelay
	}
	return f.open(opts)
}

// openForDecode opens the file for decode: packets wait for the failures that cite them
// in the capture's own time.
func (f *pcapOutFlag) openForDecode(df *decoderFlags) (*pcapOutput, error) {
	return f.open(pcapout.Options{Hold: verdictHold(df)})
}

// verdictHold is how long after its first packet a handshake or exchange is decided, at
// most: each step waits up to a response timeout, and the decoder one more, so twice the
// timeouts of the steps.
func verdictHold(df *decoderFlags) time.Duration {
	return 2 * (df.v4Timeout + df.v5Timeout + df.handshakeTimeout)
}

// open creates the file; nil when --pcap-out was not given. A file that cannot be
// created stops the command before it starts, naming the flag.
func (f *pcapOutFlag) open(opts pcapout.Options) (*pcapOutput, error) {
	if f.path == "" {
		return nil, nil
	}
	file, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--pcap-out: cannot create the file: %w (give a writable path)", err)
	}
	bw := bufio.NewWriterSize(file, 64<<10)
	opts.Application = "discotrace " + readVersion().Version
	w, err := pcapout.New(bw, opts)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("--pcap-out %s: %w", f.path, err)
	}
	return &pcapOutput{Writer: w, buf: bw, file: file}, nil
}

// pcapOutput is the pcapng file, a live.Output.
type pcapOutput struct {
	*pcapout.Writer
	buf  *bufio.Writer
	file *os.File
}

// Write writes the packet of ev, if it has one; an error names the file.
func (p *pcapOutput) Write(ev result.Event) error {
	if err := p.Writer.Write(ev); err != nil {
		return fmt.Errorf("--pcap-out %s: %w", p.file.Name(), err)
	}
	return nil
}

// Flush writes the packets whose hold time is over to the file, so that a reader
// (Wireshark reloading it, tail -f into tshark) sees them.
func (p *pcapOutput) Flush() error {
	if err := errors.Join(p.Writer.Flush(), p.buf.Flush()); err != nil {
		return fmt.Errorf("--pcap-out %s: %w", p.file.Name(), err)
	}
	return nil
}

// close flushes and closes the file; nil does nothing.
func (p *pcapOutput) close() error {
	if p == nil {
		return nil
	}
	err := p.Writer.Close() // the packets still held
	if err == nil {
		err = p.buf.Flush()
	}
	if err != nil {
		err = fmt.Errorf("--pcap-out %s: %w", p.file.Name(), err)
	}
	return errors.Join(err, p.file.Close())
}

// beside returns out with the pcapng file written after it, or out alone when there is
// no file.
func (p *pcapOutput) beside(out live.Output) live.Output {
	if p == nil {
		return out
	}
	return fanOut{out, p}
}
