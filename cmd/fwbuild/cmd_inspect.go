package main

import (
	"bytes"
	"debug/pe"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fwbuild/fwbuild/image"
)

func cmdInspect(e *env, args []string) error {
	fs := e.flags("inspect", "FILE   (a chip/firmware image, a GPT disk image or an EFI payload)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one FILE")
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	head := make([]byte, 1024)
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]

	var root *image.Node
	switch {
	case bytes.HasPrefix(head, []byte("MZ")):
		root, err = inspectPE(path)
	case len(head) >= 520 && string(head[512:520]) == "EFI PART":
		root, err = image.InspectDisk(path)
	default:
		var data []byte
		if data, err = os.ReadFile(path); err == nil {
			root, err = image.InspectFirmware(data)
		}
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", path, err)
	}
	if e.json {
		return e.printJSON(root)
	}
	printNode(e.stdout, root, 0)
	return nil
}

// inspectPE lists a payload's PE sections: for a unified Xen image, where
// .config, .kernel and .ramdisk sit and how big they are.
func inspectPE(path string) (*image.Node, error) {
	f, err := pe.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	root := &image.Node{Kind: "pe", Name: path, Size: st.Size()}
	var base uint64
	if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); ok {
		base = oh.ImageBase
		root.Note = fmt.Sprintf("image base %#x, size of image %#x, entry %#x", oh.ImageBase, oh.SizeOfImage, oh.AddressOfEntryPoint)
	}
	for _, s := range f.Sections {
		root.Children = append(root.Children, &image.Node{
			Kind: "section", Name: s.Name, Offset: int64(s.Offset), Size: int64(s.Size),
			Note: fmt.Sprintf("VA %#x, virtual size %#x", base+uint64(s.VirtualAddress), s.VirtualSize),
		})
	}
	return root, nil
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
	fmt.Fprintln(w, b.String())
	for _, c := range n.Children {
		printNode(w, c, depth+1)
	}
}
