package boardcfg

// Compression is how an archive the kernel unpacks at boot is compressed:
// the control domain, a guest's initramfs. The dom0 or guest kernel must be
// built with the matching decompressor (KernelOptions).
type Compression string

const (
	NoCompression Compression = "none"
	XZ            Compression = "xz"
	// XZX86 is xz with the x86 BCJ filter: smaller for executables.
	XZX86 Compression = "xz-x86"
	Zstd  Compression = "zstd"
)

// Ext is the file-name extension of an archive compressed this way.
func (c Compression) Ext() string {
	switch c {
	case XZ, XZX86:
		return ".xz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// Tool is the host program that compresses this way ("" for none): its
// version is part of what the archive's bytes depend on.
func (c Compression) Tool() string {
	switch c {
	case XZ, XZX86:
		return "xz"
	case Zstd:
		return "zstd"
	}
	return ""
}

// KernelOptions are the Kconfig options (all =y) a kernel needs to unpack
// an initramfs compressed this way.
func (c Compression) KernelOptions() []string {
	switch c {
	case XZ:
		return []string{"CONFIG_RD_XZ"}
	case XZX86:
		return []string{"CONFIG_RD_XZ", "CONFIG_XZ_DEC_X86"}
	case Zstd:
		return []string{"CONFIG_RD_ZSTD"}
	}
	return nil
}
