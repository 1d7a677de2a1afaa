package main

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

	"github.com/fwbuild/fwbuild/contract"
)

// efivarsDir is efivarfs; globalGUID is EFI_GLOBAL_VARIABLE.
const (
	efivarsDir = "/sys/firmware/efi/efivars"
	globalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
)

// fsImmutable is FS_IMMUTABLE_FL (linux/fs.h).
const fsImmutable = 0x10

// efivarfs is efiVars on Linux.
type efivarfs struct{ dir string }

func (e efivarfs) file(name string) string { return filepath.Join(e.dir, name+"-"+globalGUID) }

func (e efivarfs) get(name string) ([]byte, error) { return readEfivar(e.file(name)) }

// set writes a boot variable: NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
func (e efivarfs) set(name string, data []byte) error { return writeEfivar(e.file(name), 7, data) }

// readEfivar reads an efivarfs file: 4 bytes of attributes, then the data.
func readEfivar(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%s: %d bytes, no attributes", filepath.Base(p), len(b))
	}
	return b[4:], nil
}

// writeEfivar replaces an efivarfs file's variable.
func writeEfivar(p string, attrs uint32, data []byte) error {
	// efivarfs marks most variables immutable; clear the flag to rewrite one.
	if f, err := os.Open(p); err == nil {
		if flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS); err == nil && flags&fsImmutable != 0 {
			unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags&^fsImmutable)
		}
		f.Close()
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	// One write: efivarfs takes the attributes and the data in one call.
	if _, err := f.Write(append(binary.LittleEndian.AppendUint32(nil, attrs), data...)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (e efivarfs) names() ([]string, error) {
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ent := range ents {
		if n, ok := strings.CutSuffix(ent.Name(), "-"+globalGUID); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// espDir is espStore over the mounted ESP.
type espDir struct{ root string }

func (d espDir) read(name string) ([]byte, error) { return os.ReadFile(filepath.Join(d.root, name)) }

func (d espDir) write(name string, r io.Reader) error {
	p := filepath.Join(d.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	// FAT has no journal, and fsync of a file or a directory on vfat does
	// not reach the allocation table and the renamed entry (a reset right
	// after left a slot of size 0): sync the whole file system.
	root, err := os.Open(d.root)
	if err != nil {
		return err
	}
	defer root.Close()
	return unix.Syncfs(int(root.Fd()))
}

// openSlots finds, mounts and opens the ESP this boot came from: the
// partition named contract.ESPPartitionName, waiting for USB storage to
// enumerate; nil without an error when the payload did not come from an ESP.
func (a *agent) openSlots(ctx context.Context) (*slotManager, error) {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	if p, _ := contract.Param(string(cmdline), contract.BootParam); p != contract.BootESP {
		return nil, nil
	}
	var dev string
	deadline := time.Now().Add(60 * time.Second)
	for {
		dev, err = a.findPartitionNamed(contract.ESPPartitionName)
		if err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	geo, err := partitionGeometry(dev)
	if err != nil {
		return nil, fmt.Errorf("slots: %s: %w", dev, err)
	}
	if err := os.MkdirAll(contract.ESPMount, 0o755); err != nil {
		return nil, err
	}
	if err := syscall.Mount(dev, contract.ESPMount, "vfat", syscall.MS_NOATIME, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("slots: mount %s (vfat) on %s: %w", dev, contract.ESPMount, err)
	}
	if _, err := os.Stat(filepath.Join(efivarsDir)); errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("slots: no /sys/firmware/efi: this kernel was not given the firmware's runtime services")
	}
	if err := syscall.Mount("efivarfs", efivarsDir, "efivarfs", 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("slots: mount efivarfs: %w", err)
	}
	return a.slotManagerFor(ctx, espDir{contract.ESPMount}, efivarfs{efivarsDir}, geo)
}

// findPartitionNamed finds the one partition with a GPT name.
func (a *agent) findPartitionNamed(name string) (string, error) {
	found, err := a.partitionsNamed(name)
	switch {
	case err != nil:
		return "", err
	case len(found) == 0:
		return "", fmt.Errorf("no partition named %s", name)
	case len(found) > 1:
		return "", fmt.Errorf("%d partitions named %s (%s): detach all but one", len(found), name, strings.Join(found, ", "))
	}
	return found[0], nil
}

// partitionGeometry reads a partition's number, start and size from sysfs
// (in 512-byte sectors, whatever the disk's) and its GUID from the disk's GPT.
func partitionGeometry(dev string) (espGeometry, error) {
	part := filepath.Base(dev)
	sys := "/sys/class/block/" + part
	num := func(f string) (uint64, error) {
		b, err := os.ReadFile(filepath.Join(sys, f))
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	n, err1 := num("partition")
	start, err2 := num("start")
	size, err3 := num("size")
	if err := errors.Join(err1, err2, err3); err != nil {
		return espGeometry{}, err
	}
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return espGeometry{}, err
	}
	disk := filepath.Base(filepath.Dir(real))
	f, err := os.Open("/dev/" + disk)
	if err != nil {
		return espGeometry{}, err
	}
	defer f.Close()
	dsize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return espGeometry{}, err
	}
	t, err := gpt.Read(sizedReader{f, dsize}, 512, 512)
	if err != nil {
		return espGeometry{}, fmt.Errorf("GPT of /dev/%s: %w", disk, err)
	}
	for _, p := range t.Partitions {
		if p != nil && uint64(p.Index) == n {
			return espGeometry{Number: uint32(n), Start: start, Size: size, GUID: strings.ToLower(p.GUID)}, nil
		}
	}
	return espGeometry{}, fmt.Errorf("partition %d is not in /dev/%s's GPT", n, disk)
}

// slotsAtBoot opens the ESP's slots and records this boot, in the
// background of the after-ready work; confirmSlot waits for it.
func (a *agent) slotsAtBoot(ctx context.Context) {
	a.spiSlotsAtBoot() // the SPI side: spislots_linux.go
	a.slotsReady = make(chan struct{})
	go func() {
		defer close(a.slotsReady)
		m, err := a.openSlots(ctx)
		if err != nil {
			a.say(contract.Failed{Step: "slots", Reason: err.Error()})
			return
		}
		if m == nil {
			return
		}
		booted, err := m.atBoot()
		if err != nil {
			a.say(contract.Failed{Step: "slots", Reason: err.Error()})
			return
		}
		a.slots, a.booted = m, booted
	}()
}

// confirmSlot confirms the slot being tried once the control domain is
// healthy: the ready line is out (this runs after it), the management work
// is done and every autostart guest started (unhealthy names what is not).
func (a *agent) confirmSlot(ctx context.Context, unhealthy string) {
	a.confirmSPISlot(unhealthy) // the SPI side: spislots.go
	if a.slotsReady == nil {
		return
	}
	select {
	case <-a.slotsReady:
	case <-ctx.Done():
		return
	}
	if a.slots == nil {
		return
	}
	if unhealthy != "" {
		s, err := a.slots.state()
		if err == nil && a.booted != s.Active {
			info := s.Slots[a.booted]
			a.say(contract.SlotLine{Slot: a.booted, State: info.State, Version: info.Version,
				Note: "not confirmed: " + unhealthy + "; the next boot returns to slot " + s.Active})
		}
		return
	}
	if err := a.slots.confirm(a.booted); err != nil {
		a.say(contract.Failed{Step: "slots", Reason: err.Error()})
	}
}

// slotsAfterFailure is the FAILED path of an ESP boot: a slot being tried
// is given up and the machine reboots into the confirmed one.
func (a *agent) slotsAfterFailure(ctx context.Context, failed error) {
	a.spiAfterFailure(failed) // the SPI side: spislots_linux.go
	m, err := a.openSlots(ctx)
	if err != nil || m == nil {
		return
	}
	booted, err := m.atBoot()
	if err != nil {
		return
	}
	step := "start"
	var se *stepError
	if errors.As(failed, &se) {
		step = se.step
	}
	if reboot, err := m.failing(booted, step); err == nil && reboot {
		syscall.Sync()
		time.Sleep(2 * time.Second) // let the console drain
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	}
}

// operatorUpdate is `ctld update FILE [-downgrade]`: install a signed update
// artefact into the inactive slot; the next boot tries it.
func (a *agent) operatorUpdate(ctx context.Context, args []string, w io.Writer) error {
	downgrade := false
	var file string
	for _, arg := range args {
		switch {
		case arg == "-downgrade" || arg == "--downgrade":
			downgrade = true
		case file == "" && !strings.HasPrefix(arg, "-"):
			file = arg
		default:
			return fmt.Errorf("usage: ctld update FILE [-downgrade]")
		}
	}
	if file == "" {
		return fmt.Errorf("usage: ctld update FILE [-downgrade]")
	}
	m, err := a.openSlots(ctx)
	if err != nil {
		return err
	}
	if m == nil {
		return errors.New("this boot did not come from the ESP (fwbuild.boot=esp): the flash payload is updated with flashrom")
	}
	m.say = func(l fmt.Stringer) { fmt.Fprintln(w, l) }
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// The same certificate check as the unit record's (unit.go).
	var owner *x509.Certificate
	if a.sys.exists(contract.OwnerCertificate) {
		if owner, err = a.ownerCert(); err != nil {
			return err
		}
	}
	_, err = m.install(f, st.Size(), owner, downgrade)
	return err
}
