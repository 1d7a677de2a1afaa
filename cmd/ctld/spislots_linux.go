package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwbuild/fwbuild/contract"
)

// efivarfsVendor is vendorVars on Linux, for contract.SPISlotsGUID.
type efivarfsVendor struct{ dir, guid string }

func (e efivarfsVendor) file(name string) string { return filepath.Join(e.dir, name+"-"+e.guid) }

func (e efivarfsVendor) get(name string) ([]byte, error) {
	b, err := os.ReadFile(e.file(name))
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%s: %d bytes, no attributes", name, len(b))
	}
	return b[4:], nil
}

func (e efivarfsVendor) set(name string, attrs uint32, data []byte) error {
	p := e.file(name)
	// efivarfs makes variables immutable; clear the flag to rewrite one.
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
	// One write: the attributes and the data in one call.
	buf := binary.LittleEndian.AppendUint32(nil, attrs)
	if _, err := f.Write(append(buf, data...)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mountEfivarfs mounts efivarfs where ctld reads variables.
func mountEfivarfs() error {
	if _, err := os.Stat(efivarsDir); errors.Is(err, fs.ErrNotExist) {
		return errors.New("no /sys/firmware/efi: this kernel was not given the firmware's runtime services")
	}
	if err := syscall.Mount("efivarfs", efivarsDir, "efivarfs", 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("mount efivarfs: %w", err)
	}
	return nil
}

// operatorSPI is `ctld spi pending <a|b>` (see markPending) and `ctld spi`
// (the state as the next boot reads it).
func operatorSPI(args []string, w io.Writer) error {
	if err := mountEfivarfs(); err != nil {
		return err
	}
	v := efivarfsVendor{efivarsDir, contract.SPISlotsGUID}
	switch {
	case len(args) == 2 && args[0] == "pending":
		line, err := markPending(v, args[1])
		if err != nil {
			return err
		}
		fmt.Fprintln(w, line)
		return nil
	case len(args) == 0:
		s, err := readSPISlots(v)
		if err != nil {
			return err
		}
		if s == nil {
			return errors.New("the launcher started no payload slot on this boot (one payload region, or not a flash boot)")
		}
		fmt.Fprintln(w, s.bootLine())
		return nil
	}
	return errors.New("usage: ctld spi [pending a|b]")
}

// operatorReboot is `ctld reboot`: sync and restart the machine (under Xen,
// dom0's restart resets the machine).
func operatorReboot() error {
	syscall.Sync()
	return syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}

// spiAfterFailure is the FAILED path of a flash boot: a slot on trial is
// given up at once, so the next boot (the launcher marks it failed) is the
// confirmed slot.
func (a *agent) spiAfterFailure(failed error) {
	if a.bootPath() != contract.BootFlash || mountEfivarfs() != nil {
		return
	}
	s, err := readSPISlots(efivarfsVendor{efivarsDir, contract.SPISlotsGUID})
	if err != nil {
		return
	}
	if line := s.failedTrial(failed); line != nil {
		a.say(*line)
		syscall.Sync()
		time.Sleep(2 * time.Second) // let the console drain
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	}
}

// spiSlotBoot reports whether the launcher started one of two SPI payload
// slots on this boot, which the detached ctld then confirms.
func (a *agent) spiSlotBoot() bool {
	if a.bootPath() != contract.BootFlash || mountEfivarfs() != nil {
		return false
	}
	_, err := os.Stat(efivarfsVendor{efivarsDir, contract.SPISlotsGUID}.file(contract.SPIBootedVar))
	return err == nil
}

// spiSlotsAtBoot reads the launcher's slot variables on a flash boot and
// prints the booted slot's line; confirmSPISlot uses what it read.
func (a *agent) spiSlotsAtBoot() {
	if a.bootPath() != contract.BootFlash {
		return
	}
	if _, err := os.Stat(efivarsDir); errors.Is(err, fs.ErrNotExist) {
		return // no runtime services: the launcher's variables are out of reach
	}
	if err := mountEfivarfs(); err != nil {
		a.say(contract.Failed{Step: "spi slots", Reason: err.Error()})
		return
	}
	s, err := readSPISlots(efivarfsVendor{efivarsDir, contract.SPISlotsGUID})
	if err != nil {
		a.say(contract.Failed{Step: "spi slots", Reason: err.Error()})
		return
	}
	if s == nil {
		return
	}
	a.spiSlots = s
	a.say(s.bootLine())
}
