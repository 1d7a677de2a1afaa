package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// attachedConsole is an interactive xl console: writes go to its standard
// input (xenconsole forwards them to the guest's console).
type attachedConsole struct {
	*consoleStream
	in io.Writer
}

func (c attachedConsole) Write(p []byte) (int, error) { return c.in.Write(p) }

// attach runs name (xl console <guest>) with pipes for its standard input
// and output, as stream does, but keeps the input for the user's keys.
func (execRunner) attach(ctx context.Context, name string, args ...string) (io.ReadWriteCloser, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close()
	go cmd.Wait()
	return attachedConsole{consoleStream: &consoleStream{r: pr, stdin: stdin, cmd: cmd}, in: stdin}, nil
}
