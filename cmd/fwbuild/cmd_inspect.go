package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/image"
)

func (e *env) inspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "show the volumes/files of a chip image, partitions of a disk image, sections of a payload",
		Long: "inspect prints the firmware-volume tree of a chip image (with its guests region), the partitions\n" +
			"and files of a disk image, the sections of a PE payload, or the files of a guest bundle or cpio\n" +
			"archive; the format is told from the content.",
		Example: "  fwbuild inspect out/qemu-q35/spi.bin\n  fwbuild inspect --json out/qemu-q35/usb.img",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one FILE")
			}
			return nil
		},
		RunE: runE(func(_ *cobra.Command, args []string) error { return e.inspect(args[0]) }),
	}
}

func (e *env) inspect(path string) error {
	root, err := image.Inspect(path)
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
