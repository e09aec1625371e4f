package capture

import "bytes"

// IsCapture tells whether head, the first four bytes of a file, starts something Read
// accepts: a pcap or pcapng capture, or a gzip-compressed one. Commands that take either
// a capture or another format (report reads NDJSON too) decide by it.
func IsCapture(head []byte) bool {
	return bytes.Equal(head, pcapngMagic) || isPcapMagic(head) || bytes.HasPrefix(head, gzipMagic)
}
