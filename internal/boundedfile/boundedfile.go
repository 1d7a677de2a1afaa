// Package boundedfile reads files named by people fwbuild does not trust
// (profiles, kernel fragments, a kernel given by path) without being made
// to read a device, block on a FIFO or exhaust memory.
package boundedfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Read reads a regular file of at most max bytes. It stats the path before
// opening it (opening a device can act: a tape rewinds, a terminal is
// acquired), checks the opened file again (the path may have been swapped
// meanwhile; O_NONBLOCK keeps a FIFO swapped in from hanging), and stops
// reading past max whatever the file does.
func Read(path string, max int64) ([]byte, error) {
	if err := check(os.Stat(path)); err != nil {
		return nil, fmt.Errorf("%s %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err == nil {
		err = check(st, nil)
	}
	if err == nil && st.Size() > max {
		err = fmt.Errorf("is %d bytes: at most %d", st.Size(), max)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s grew past %d bytes while read", path, max)
	}
	return data, nil
}

func check(st os.FileInfo, err error) error {
	if err != nil {
		return fmt.Errorf("cannot be read: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("is not a regular file (%v)", st.Mode().Type())
	}
	return nil
}
