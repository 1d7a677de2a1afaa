package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The go line an early guest helper waits for (earlyHelper): "go", a tab and
// the toolstack directory (empty: the helper finds it itself), a newline.
const helperGoWord = "go"

func writeGo(w io.Writer, xenBin string) error {
	if strings.ContainsAny(xenBin, "\n") {
		return fmt.Errorf("toolstack directory %q holds a newline", xenBin)
	}
	_, err := fmt.Fprintf(w, "%s\t%s\n", helperGoWord, xenBin)
	return err
}

// waitForGo reads the go line. ok is false when the pipe closed without one:
// ctld had nothing for the helper to do, or it failed or died first.
func waitForGo(r io.Reader) (xenBin string, ok bool, err error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if errors.Is(err, io.EOF) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read the go line: %w", err)
	}
	word, dir, found := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
	if !found || word != helperGoWord {
		return "", false, fmt.Errorf("go line %q: want %q, a tab and the toolstack directory", line, helperGoWord)
	}
	return dir, true, nil
}
