package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/fwbuild/fwbuild/image"
)

func cmdInspect(e *env, args []string) error {
	fs := e.flags("inspect", "FILE   (a chip or firmware image, a GPT disk image, a PE/EFI payload, a guest bundle or a cpio archive)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one FILE")
	}
	root, err := image.Inspect(fs.Arg(0))
	if err != nil {
		return err
	}
	// Damage is listed on its node and repeated on stderr, where it is
	// seen even when the listing is long or goes to a JSON consumer.
	for _, w := range root.Warnings() {
		fmt.Fprintf(e.stderr, "fwbuild inspect: warning: %s\n", w)
	}
	if e.json {
		return e.printJSON(root)
	}
	printNode(e.stdout, root, 0)
	return nil
}

func printNode(w io.Writer, n *image.Node, depth int) {
	var b strings.Builder
	b.WriteString(strings.Repeat("  ", depth))
	b.WriteString(n.Kind)
	if n.Name != "" {
		fmt.Fprintf(&b, " %s", n.Name)
	}
	if n.GUID != "" {
		fmt.Fprintf(&b, " %s", n.GUID)
	}
	if n.Type != "" {
		fmt.Fprintf(&b, " [%s]", n.Type)
	}
	fmt.Fprintf(&b, " offset %#x size %d", n.Offset, n.Size)
	if n.Free != nil {
		fmt.Fprintf(&b, " free %d", *n.Free)
	}
	if n.Note != "" {
		fmt.Fprintf(&b, " (%s)", n.Note)
	}
	if n.Warning != "" {
		fmt.Fprintf(&b, " WARNING: %s", n.Warning)
	}
	fmt.Fprintln(w, b.String())
	for _, c := range n.Children {
		printNode(w, c, depth+1)
	}
}
