package hvcore

import (
	"bytes"
	"debug/pe"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
)

func testSections(t testing.TB) Sections {
	cfg, err := XenConfig(XenConfigSpec{XenOptions: "console=com1", Dom0Cmdline: "console=hvc0"})
	if err != nil {
		t.Fatal(err)
	}
	ramdisk := bytes.Repeat([]byte("070701 not really a cpio "), 4000)
	return Sections{Config: cfg, Kernel: readFile(t, "linux-image", "bzimage"), Ramdisk: ramdisk}
}

func TestUnifiedEFI(t *testing.T) {
	xen := readFile(t, "xen", "efi")
	s := testSections(t)
	s.Ucode = []byte("microcode")
	s.XSM = []byte("policy")
	out, err := UnifiedEFI(xen, s)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	of, err := pe.NewFile(bytes.NewReader(xen))
	if err != nil {
		t.Fatal(err)
	}
	pad := f.Section(".pad")
	end := pad.VirtualAddress + pad.VirtualSize
	want := []struct {
		name string
		data []byte
	}{{".config", s.Config}, {".kernel", s.Kernel}, {".ramdisk", s.Ramdisk}, {".ucode", s.Ucode}, {".xsm", s.XSM}}
	if len(f.Sections) != len(of.Sections)+len(want) {
		t.Fatalf("%d sections, want %d", len(f.Sections), len(of.Sections)+len(want))
	}
	for i, w := range want {
		sec := f.Sections[len(of.Sections)+i]
		if sec.Name != w.name {
			t.Fatalf("section %d is %s, want %s", len(of.Sections)+i, sec.Name, w.name)
		}
		if sec.VirtualAddress < end || sec.VirtualAddress%SectionAlign != 0 {
			t.Errorf("%s at RVA 0x%x: want 2 MiB-aligned and at or above 0x%x", sec.Name, sec.VirtualAddress, end)
		}
		end = sec.VirtualAddress + sec.VirtualSize
		d, err := sec.Data()
		if err != nil || !bytes.HasPrefix(d, w.data) || int(sec.VirtualSize) != len(w.data) {
			t.Errorf("%s: contents differ from the input (err %v)", sec.Name, err)
		}
	}
	if got := f.OptionalHeader.(*pe.OptionalHeader64).SizeOfImage; got != (end+SectionAlign-1)&^(SectionAlign-1) {
		t.Errorf("SizeOfImage 0x%x does not end at the 2 MiB boundary after 0x%x", got, end)
	}
	for _, name := range []string{".text", ".rodata", ".init", ".data", ".reloc"} {
		a, _ := of.Section(name).Data()
		b, _ := f.Section(name).Data()
		if !bytes.Equal(a, b) {
			t.Errorf("Xen's %s changed", name)
		}
	}

	again, err := UnifiedEFI(bytes.Clone(xen), s)
	if err != nil || !bytes.Equal(out, again) {
		t.Errorf("second build differs (err %v)", err)
	}
}

func TestUnifiedEFIErrors(t *testing.T) {
	xen := readFile(t, "xen", "efi")
	s := testSections(t)
	unified, err := UnifiedEFI(xen, s)
	if err != nil {
		t.Fatal(err)
	}
	noKernel := s
	noKernel.Kernel = nil
	cases := []struct {
		name string
		efi  []byte
		s    Sections
		want string
	}{
		{"gzip xen", readFile(t, "xen", "gz"), s, "xen.efi is not a PE image"},
		{"empty xen", nil, s, "xen.efi is not a PE image"},
		{"32-bit", pesynth.Image(pesynth.Options{PE32: true, Machine: 0x14c}), s, "not an x86-64 EFI application"},
		{"not EFI", pesynth.Image(pesynth.Options{Subsystem: 3}), s, "not an x86-64 EFI application"},
		{"already unified", unified, s, "already a unified image"},
		{"no kernel", xen, noKernel, ".kernel is empty"},
		{"signed", pesynth.Image(pesynth.Options{Certificate: true}), s, "signed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := UnifiedEFI(c.efi, c.s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// FuzzUnifiedEFI feeds arbitrary bytes as xen.efi: errors are fine, panics
// are not, and whatever is accepted must come out as a PE with the new
// sections.
func FuzzUnifiedEFI(f *testing.F) {
	f.Add(pesynth.Image(pesynth.Options{}))
	f.Add(pesynth.Image(pesynth.Options{SizeOfHeaders: 0x200, FileAlign: 0x20, SectionAlign: 0x200000,
		Sections: []pesynth.Sec{{Name: ".text", Size: 0x40}, {Name: ".reloc", Size: 0x20}, {Name: ".pad", VSize: 0x600000}}}))
	f.Add(pesynth.Image(pesynth.Options{Trailer: bytes.Repeat([]byte{0xff}, 64)}))
	s := Sections{Config: []byte("[global]\n"), Kernel: []byte("kernel"), Ramdisk: []byte("ramdisk")}
	f.Fuzz(func(t *testing.T, xen []byte) {
		out, err := UnifiedEFI(xen, s)
		if err != nil {
			return
		}
		pf, err := pe.NewFile(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("accepted input gives an unreadable PE: %v", err)
		}
		for _, name := range []string{".config", ".kernel", ".ramdisk"} {
			if pf.Section(name) == nil {
				t.Fatalf("no %s section in the output", name)
			}
		}
	})
}

func BenchmarkUnifiedEFI(b *testing.B) {
	xen := readFile(b, "xen", "efi")
	s := testSections(b)
	var out []byte
	for b.Loop() {
		var err error
		if out, err = UnifiedEFI(xen, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(out)), "bytes")
}
