package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fwbuild/fwbuild/contract"
)

// The host side of ctld, after the ready line (the ready line still means
// "the toolstack answers"; what a network or a disk does cannot hold it
// back): the management network, then the data disk, then the guests.
// The guest helper (ctld -guests, detached so the operator shell starts at
// once) does all three, in that order: guests' vifs need the bridge and
// their disks and definitions live on the data disk. Each prints its line,
// contract.Management and contract.DataDiskReady, or a FAILED line
// (steps "network" and "storage"); a failed network does not stop the
// data disk or the guests, a failed data disk stops only the guests that
// need it. The Redfish service (redfish.go) starts after the data disk.

// loadHostConfig reads contract.HostConfigPath; a profile without network
// or storage has none.
func (a *agent) loadHostConfig() (*contract.HostConfig, error) {
	p := a.cfg.HostConfig
	if p == "" || !a.sys.exists(p) {
		return nil, nil
	}
	b, err := a.sys.readFile(p)
	if err != nil {
		return nil, err
	}
	h, err := contract.ParseHostConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &h, nil
}

// hostDevices is what the host side needs from the kernel.
type hostDevices interface {
	netOps
	diskOps
	mediaOps
}

// setUpHost brings up the network and the data disk the host config names.
// dataOK says whether guests may use the data disk.
func (a *agent) setUpHost(ctx context.Context, h *contract.HostConfig, dev hostDevices) (dataOK bool) {
	if h == nil {
		return false
	}
	if h.Network != nil {
		a.timed("network", func() error {
			a.bringUpNetwork(ctx, dev, h.Network, a.cfg.DeviceWait)
			// The guest bridge whatever became of the management
			// address: the guests need it either way.
			if g := h.Network.Guests; g != nil {
				a.bringUpGuestNetwork(ctx, dev, g, h.Network.NICs, a.cfg.DeviceWait)
			}
			return nil
		})
	}
	if h.Storage != nil {
		dataOK = a.timed("storage", func() error { return a.setUpDataDisk(ctx, dev, h.Storage.Data, a.cfg.DeviceWait) }) == nil
	}
	// The Redfish service comes after the network (it listens on the
	// management address only) and the data disk (its TLS key and the
	// VMs live there), before the images are copied, which can take
	// minutes. A failure is its own FAILED line; the guests start anyway.
	if h.Network != nil {
		a.timed("redfish", func() error { return a.startRedfish(ctx, h, dataOK, rebootUnit) })
	}
	if dataOK {
		// A guest whose image did not arrive fails when its disk is
		// created; the others run.
		a.timed("images", func() error {
			a.provisionImages(ctx, "", dev, imageClient())
			return nil
		})
	}
	return dataOK
}

// seedGuests gives each guest the profile declares its place on the data
// disk the first time ctld sees it: its disks (sparse files of their size,
// or copies of a guest image's root file system), then its xl config, last,
// so that a guest whose config is there is complete. A guest already there
// is left as it is: its disks hold what it wrote, and its definition is the
// one on the disk (the API of the next issue edits it there). root
// prefixes every data-disk path (tests); it is "" in the control domain.
func (a *agent) seedGuests(root string, h *contract.HostConfig, declared []guest) error {
	disks := map[string][]contract.GuestDisk{}
	if h != nil {
		for _, g := range h.Guests {
			disks[g.Name] = g.Disks
		}
	}
	for _, g := range declared {
		cfgPath := root + contract.DataGuestConfig(g.Name)
		if _, err := os.Stat(cfgPath); err == nil {
			continue
		}
		if err := a.seedGuest(root, g, disks[g.Name], cfgPath); err != nil {
			// This guest stays off the data disk (and so is not
			// started); the next boot tries again.
			a.say(contract.GuestFailed{Name: g.Name, Reason: err.Error()})
		}
	}
	return nil
}

func (a *agent) seedGuest(root string, g guest, disks []contract.GuestDisk, cfgPath string) error {
	if err := os.MkdirAll(root+contract.DataGuestDir(g.Name), 0o755); err != nil {
		return err
	}
	for _, d := range disks {
		if err := a.createGuestDisk(root, g.Name, d); err != nil {
			return fmt.Errorf("disk %s: %w", d.Name, err)
		}
	}
	b, err := a.sys.readFile(g.Config)
	if err != nil {
		return err
	}
	return writeFileAtomic(cfgPath, b, 0o644)
}

// createGuestDisk creates one guest disk, unless a previous, interrupted
// seed left it complete (its temporary file is renamed only when done).
func (a *agent) createGuestDisk(root, guest string, d contract.GuestDisk) error {
	p := root + contract.DataGuestDisk(guest, d.Name)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	if d.From != "" {
		src := root + contract.DataImageFile(d.From, contract.GuestRootFile)
		in, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("guest image %s: %w", d.From, err)
		}
		n, err := io.Copy(f, in)
		in.Close()
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if n > d.Size {
			return fmt.Errorf("guest image %s is %d bytes, more than the disk's %d", d.From, n, d.Size)
		}
	}
	if err := f.Truncate(d.Size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	a.say(contract.GuestDiskCreated{Guest: guest, Disk: d.Name, Size: d.Size, From: d.From})
	return nil
}

// writeFileAtomic writes a file whole or not at all.
func writeFileAtomic(p string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// dataGuests lists the guests defined on the data disk.
func (a *agent) dataGuests(root string) ([]guest, error) {
	files, err := filepath.Glob(root + contract.DataGuestConfig("*"))
	if err != nil {
		return nil, err
	}
	var gs []guest
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f))
		if !contract.ValidGuestName(name) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		auto, err := contract.ParseAutostart(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		gs = append(gs, guest{Name: name, Config: f, Autostart: auto, Type: contract.ParseXLType(b), Auto: contract.ParseTypeAuto(b)})
	}
	return gs, nil
}
