package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// efivarfsVendor is vendorVars on Linux, for contract.SPISlotsGUID.
type efivarfsVendor struct{ dir, guid string }

func (e efivarfsVendor) file(name string) string { return filepath.Join(e.dir, name+"-"+e.guid) }

func (e efivarfsVendor) get(name string) ([]byte, error) { return readEfivar(e.file(name)) }

func (e efivarfsVendor) set(name string, attrs uint32, data []byte) error {
	return writeEfivar(e.file(name), attrs, data)
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
