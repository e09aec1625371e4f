package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes one "newc" cpio archive, the format the kernel unpacks as an initramfs.
// The kernel does not create missing parent directories, so the writer emits every parent
// directory before the first entry below it. Several archives concatenated form one
// initramfs; later ones add to (and may overwrite files of) earlier ones.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{".": true, "/": true}}
}

const (
	cpioModeDir     = 0o040000
	cpioModeFile    = 0o100000
	cpioModeSymlink = 0o120000
	cpioModeChar    = 0o020000
)

func (c *cpioWriter) header(name string, mode, size, rdevMajor, rdevMinor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	fields := []uint32{c.ino, mode, 0, 0, 1, 0, size, 0, 0, rdevMajor, rdevMinor, uint32(len(name) + 1), 0}
	var b strings.Builder
	b.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&b, "%08x", f)
	}
	b.WriteString(name)
	b.WriteByte(0)
	for (b.Len())%4 != 0 {
		b.WriteByte(0)
	}
	_, c.err = io.WriteString(c.w, b.String())
}

func (c *cpioWriter) pad(n int64) {
	if c.err != nil || n%4 == 0 {
		return
	}
	_, c.err = c.w.Write(make([]byte, 4-n%4))
}

// archivePath turns an absolute guest path into the relative name cpio stores.
func archivePath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// Dir adds a directory and its parents.
func (c *cpioWriter) Dir(p string) {
	p = archivePath(p)
	if p == "" || c.dirs[p] {
		return
	}
	c.Dir(path.Dir(p))
	c.dirs[p] = true
	c.header(p, cpioModeDir|0o755, 0, 0, 0)
}

// Bytes adds a regular file with the given contents.
func (c *cpioWriter) Bytes(p string, perm uint32, data []byte) {
	p = archivePath(p)
	c.Dir(path.Dir(p))
	c.header(p, cpioModeFile|perm, uint32(len(data)), 0, 0)
	if c.err == nil {
		_, c.err = c.w.Write(data)
	}
	c.pad(int64(len(data)))
}

// File adds a host file (symlinks followed) under the guest path p.
func (c *cpioWriter) File(p, hostPath string, perm uint32) {
	if c.err != nil {
		return
	}
	f, err := os.Open(hostPath)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	if st.Size() > 1<<32-1 {
		c.err = fmt.Errorf("%s: too large for a cpio newc archive", hostPath)
		return
	}
	p = archivePath(p)
	c.Dir(path.Dir(p))
	c.header(p, cpioModeFile|perm, uint32(st.Size()), 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, f)
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed size while being archived", hostPath)
	}
	c.err = err
	c.pad(n)
}

// Symlink adds a symbolic link p -> target.
func (c *cpioWriter) Symlink(p, target string) {
	p = archivePath(p)
	c.Dir(path.Dir(p))
	c.header(p, cpioModeSymlink|0o777, uint32(len(target)), 0, 0)
	if c.err == nil {
		_, c.err = io.WriteString(c.w, target)
	}
	c.pad(int64(len(target)))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(p string, perm, major, minor uint32) {
	p = archivePath(p)
	c.Dir(path.Dir(p))
	c.header(p, cpioModeChar|perm, 0, major, minor)
}

// Close writes the trailer; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}
