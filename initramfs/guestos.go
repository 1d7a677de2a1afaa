package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
	"github.com/google/uuid"
)

// GuestOSSpec says how to build a stock guest image: a stock kernel's
// modules and a static busybox, as a tiny initramfs (drivers, then the root
// file system from the virtual disk) and an ext4 root image (init, DHCP,
// fetch, marker).
type GuestOSSpec struct {
	// Name is the image's name: it seeds the file system's UUIDs and is the
	// name the guest's lines carry when no fwbuild.guest= is given.
	Name string
	// Busybox is the host path of a static busybox binary.
	Busybox string
	// Roots are extracted package trees holding Modules.
	Roots []string
	// Modules are paths inside Roots (lib/modules/<release>/...ko); their
	// dependencies come along, loaded first.
	Modules []string
	// RootSize is the root image's size in bytes (whole MiB).
	RootSize int64
	// Epoch is every timestamp in both images.
	Epoch time.Time
	// TempDir holds build files, removed afterwards; default os.TempDir().
	TempDir string
}

// GuestOS is a built stock guest image.
type GuestOS struct {
	Initrd  []byte   // xz-compressed newc archive
	Modules []string // in load order
}

// guestOSModules lists, in load order, the modules the initramfs loads.
const guestOSModules = "/etc/fwbuild/modules"

// guestOSApplets are the busybox applets the root file system links in /bin.
var guestOSApplets = []string{"cat", "cut", "echo", "hostname", "ifconfig", "ip", "ls", "mkdir", "mount", "poweroff",
	"mv", "route", "sh", "sha256sum", "sleep", "sync", "timeout", "udhcpc", "umount", "wc", "wget"}

// BuildGuestOS writes the root image to rootPath (through a temporary file)
// and returns the initramfs. The same spec and e2fsprogs give the same bytes:
// mke2fs runs with a private config, fixed UUIDs, hash seed and time, and
// debugfs then sets every inode's times (mke2fs 1.47.0 copies the staged
// files' ctime, which no one can set).
func BuildGuestOS(ctx context.Context, s GuestOSSpec, rootPath string) (*GuestOS, error) {
	none := boardcfg.NoCompression
	if err := checkArchiveSpec("guest image "+s.Name, &none, s.Epoch); err != nil {
		return nil, err
	}
	if !contract.ValidGuestName(s.Name) {
		return nil, fmt.Errorf("guest image: name %q", s.Name)
	}
	if s.RootSize < 8<<20 || s.RootSize%(1<<20) != 0 {
		return nil, fmt.Errorf("guest image %s: root size %d: want whole MiB, at least 8 MiB", s.Name, s.RootSize)
	}
	bb, err := os.ReadFile(s.Busybox)
	if err != nil {
		return nil, fmt.Errorf("guest image %s: busybox: %w", s.Name, err)
	}
	if err := checkStatic(bb); err != nil {
		return nil, fmt.Errorf("guest image %s: busybox %s: %w", s.Name, s.Busybox, err)
	}

	// The initramfs: busybox, the drivers, /init.
	t, err := closure.New(s.Roots)
	if err != nil {
		return nil, fmt.Errorf("guest image %s: %w", s.Name, err)
	}
	mods, err := t.AddModules(s.Modules)
	if err != nil {
		return nil, fmt.Errorf("guest image %s: %w", s.Name, err)
	}
	nodes := t.Nodes
	file := func(p string, perm uint32, data []byte) {
		nodes[p] = &closure.Node{Path: p, Kind: closure.File, Perm: os.FileMode(perm), Data: data, Size: int64(len(data))}
	}
	file("/bin/busybox", 0o755, bb)
	nodes["/bin/sh"] = &closure.Node{Path: "/bin/sh", Kind: closure.Symlink, Perm: 0o777, Link: "busybox", Size: 7}
	file("/init", 0o755, []byte(guestOSInitrdInit(s.Name)))
	file(guestOSModules, 0o644, []byte(strings.Join(mods, "\n")+"\n"))
	nodes["/dev/console"] = &closure.Node{Path: "/dev/console", Kind: closure.CharDev, Perm: 0o600, Major: 5, Minor: 1}
	for _, d := range []string{"/dev", "/proc", "/sys", "/newroot"} {
		nodes[d] = &closure.Node{Path: d, Kind: closure.Dir, Perm: 0o755}
	}
	addParents(nodes)
	var raw bytes.Buffer
	if _, err := writeCPIO(&raw, nodes, s.Epoch.Unix()); err != nil {
		return nil, fmt.Errorf("guest image %s: initramfs: %w", s.Name, err)
	}
	// A small dictionary: the kernel allocates it whole before unpacking.
	initrd, err := xzTool(ctx, raw.Bytes(), "--lzma2=preset=9e,dict=2MiB")
	if err != nil {
		return nil, fmt.Errorf("guest image %s: initramfs: compress: %w", s.Name, err)
	}

	tmp, err := os.MkdirTemp(s.TempDir, "fwbuild-guestos-")
	if err != nil {
		return nil, fmt.Errorf("guest image %s: %w", s.Name, err)
	}
	defer os.RemoveAll(tmp)
	if err := makeRoot(ctx, s, bb, tmp, rootPath); err != nil {
		return nil, fmt.Errorf("guest image %s: root file system: %w", s.Name, err)
	}
	return &GuestOS{Initrd: initrd, Modules: mods}, nil
}

// mke2fsConf fixes every mke2fs default the host's /etc/mke2fs.conf would
// otherwise choose. The features are what Debian 12's kernels mount.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
	}
	floppy = {
	}
`

// makeRoot stages the root tree, makes the ext4 image and fixes its times.
func makeRoot(ctx context.Context, s GuestOSSpec, busybox []byte, tmp, rootPath string) error {
	st := filepath.Join(tmp, "root")
	files := map[string][]byte{
		"bin/busybox":                 busybox,
		"sbin/init":                   []byte(guestOSRootInit(s.Name)),
		"etc/fwbuild/udhcpc.script":   []byte(guestOSUdhcpcScript),
		"etc/fwbuild/image":           []byte(s.Name + "\n"),
		"etc/hostname":                []byte(s.Name + "\n"),
		"var/lib/fwbuild-guest/.keep": nil,
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "var/lib/fwbuild-guest", "etc/fwbuild", "bin", "sbin"} {
		if err := os.MkdirAll(filepath.Join(st, d), 0o755); err != nil {
			return err
		}
	}
	for p, data := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "bin/") || strings.HasPrefix(p, "sbin/") || strings.HasSuffix(p, ".script") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(st, p), data, mode); err != nil {
			return err
		}
		// WriteFile's mode passes through the umask.
		if err := os.Chmod(filepath.Join(st, p), mode); err != nil {
			return err
		}
	}
	for _, a := range guestOSApplets {
		if err := os.Symlink("busybox", filepath.Join(st, "bin", a)); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(st, "tmp"), 0o1777); err != nil {
		return err
	}
	var paths []string
	if err := filepath.Walk(st, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(st, p)
		paths = append(paths, "/"+filepath.ToSlash(rel))
		return nil
	}); err != nil {
		return err
	}
	paths = append(paths, "/lost+found")
	for i, p := range paths {
		if p == "/." {
			paths[i] = "/"
		}
	}
	sort.Strings(paths)

	conf := filepath.Join(tmp, "mke2fs.conf")
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o644); err != nil {
		return err
	}
	epoch := strconv.FormatInt(s.Epoch.Unix(), 10)
	env := append(os.Environ(), "MKE2FS_CONFIG="+conf, "E2FSPROGS_FAKE_TIME="+epoch, "LC_ALL=C")
	img := filepath.Join(tmp, "root.img")
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(s.RootSize); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fsUUID := uuid.NewSHA1(fwbuildNS, []byte("guest-image-fs\x00"+s.Name)).String()
	seed := uuid.NewSHA1(fwbuildNS, []byte("guest-image-hash\x00"+s.Name)).String()
	if err := run(ctx, env, "mke2fs", "-q", "-F", "-t", "ext4", "-L", label(s.Name), "-U", fsUUID,
		"-E", "root_owner=0:0,hash_seed="+seed+",lazy_itable_init=0,lazy_journal_init=0", "-d", st, img); err != nil {
		return err
	}
	var script strings.Builder
	for _, p := range paths {
		for _, field := range []string{"atime", "mtime", "ctime", "crtime"} {
			fmt.Fprintf(&script, "sif %q %s @%s\nsif %q %s_extra 0\n", p, field, epoch, p, field)
		}
		fmt.Fprintf(&script, "sif %q uid 0\nsif %q gid 0\n", p, p)
	}
	cmds := filepath.Join(tmp, "debugfs.cmds")
	if err := os.WriteFile(cmds, []byte(script.String()), 0o644); err != nil {
		return err
	}
	if err := run(ctx, env, "debugfs", "-w", "-f", cmds, img); err != nil {
		return err
	}
	if err := run(ctx, env, "e2fsck", "-fn", img); err != nil {
		return fmt.Errorf("the image does not check: %w", err)
	}
	return os.Rename(img, rootPath)
}

// fwbuildNS matches image's namespace for GUIDs derived from names.
var fwbuildNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/fwbuild/fwbuild"))

// label is the file system label: at most 16 bytes.
func label(name string) string {
	l := "fwb-" + name
	if len(l) > 16 {
		l = l[:16]
	}
	return l
}

// run runs a host tool; debugfs reports failed requests only on stderr,
// so any line there but its banner is an error.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var bad []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			bad = append(bad, l)
		}
	}
	if err == nil && name == "debugfs" && len(bad) > 0 {
		err = fmt.Errorf("requests failed")
	}
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%s is not installed: apt-get install e2fsprogs (or fwbuild doctor --fix)", name)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s %s", name, strings.Join(args, " "), err, strings.Join(bad, "; "), strings.TrimSpace(stdout.String()))
	}
	return nil
}

// InstallerHook is the path of the startup hook InstallerExtras adds.
const InstallerHook = "/lib/debian-installer-startup.d/S05fwbuild-disks"

// InstallerExtras is an uncompressed cpio to append to Debian's installer
// initrd (the kernel unpacks concatenated archives as one tree): Modules
// from Roots (the installer kernel's own build) with their dependencies, and
// a startup hook that loads them and prints a GuestOSDisk line per disk.
func InstallerExtras(name string, roots, modules []string, epoch time.Time) ([]byte, error) {
	none := boardcfg.NoCompression
	if err := checkArchiveSpec("guest image "+name, &none, epoch); err != nil {
		return nil, err
	}
	t, err := closure.New(roots)
	if err != nil {
		return nil, fmt.Errorf("guest image %s: %w", name, err)
	}
	mods, err := t.AddModules(modules)
	if err != nil {
		return nil, fmt.Errorf("guest image %s: %w", name, err)
	}
	nodes := t.Nodes
	list := []byte(strings.Join(mods, "\n") + "\n")
	hook := []byte(guestOSScript(installerHookTmpl, name))
	nodes[guestOSModules] = &closure.Node{Path: guestOSModules, Kind: closure.File, Perm: 0o644, Data: list, Size: int64(len(list))}
	nodes[InstallerHook] = &closure.Node{Path: InstallerHook, Kind: closure.File, Perm: 0o755, Data: hook, Size: int64(len(hook))}
	addParents(nodes)
	var raw bytes.Buffer
	if _, err := writeCPIO(&raw, nodes, epoch.Unix()); err != nil {
		return nil, fmt.Errorf("guest image %s: %w", name, err)
	}
	return raw.Bytes(), nil
}
