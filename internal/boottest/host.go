package boottest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// BlankDataDiskSize is the size of the blank data disk a boot of a board
// with storage.data gets.
const BlankDataDiskSize = 512 << 20

// hostDevices gives a board that names a management NIC or a data disk
// those devices, made so that the profile's identifiers find them: each NIC
// a virtio-net on QEMU's user network (at the PCI slot a pci: identifier
// names, with the MAC a mac: one names; a guest uplink NIC on a user
// network of its own, GuestSubnet), the data disk a blank virtio-blk
// disk in workDir (with the serial a serial: identifier names, at the slot
// a path:pci-... one names). An identifier QEMU cannot give is an error.
func hostDevices(b *boardcfg.Board, m *qemutests.Machine, workDir string) error {
	// QEMU places devices without an address in command-line order, and
	// disks come before the NICs: a disk gets an explicit slot too, one
	// no NIC asks for.
	used := map[string]bool{}
	if n := b.Network; n != nil {
		for i, id := range n.NICs {
			kind, value, err := contract.ParseNICID(id)
			if err != nil {
				return err
			}
			dev := fmt.Sprintf("virtio-net-pci,netdev=fwnet%d", i)
			switch kind {
			case contract.IDPCI:
				addr, err := slot(value)
				if err != nil {
					return fmt.Errorf("boottest: %s: nic %s: %w", b.Loc(fmt.Sprintf("network.nics[%d]", i)), id, err)
				}
				dev += ",addr=" + addr
				used[addr] = true
			case contract.IDMAC:
				dev += ",mac=" + value
			case contract.IDName:
				if i > 0 {
					return fmt.Errorf("boottest: %s: nic %s: only the first NIC can be named by name (eth0)", b.Loc(fmt.Sprintf("network.nics[%d]", i)), id)
				}
			}
			m.Args = append(m.Args, "-netdev", fmt.Sprintf("user,id=fwnet%d", i), "-device", dev)
		}
		if g := n.Guests; g != nil {
			for i, id := range g.NICs {
				dev, err := guestUplink(b, i, id, used)
				if err != nil {
					return err
				}
				// A user network of its own per uplink, on a subnet
				// apart from the management NIC's 10.0.2.0/24: the
				// guests' DHCP leases say which network they are on.
				m.Args = append(m.Args, "-netdev", fmt.Sprintf("user,id=fwguest%d,net=%s", i, GuestSubnet(i)), "-device", dev)
			}
		}
	}
	if s := b.Storage; s != nil && s.Data != nil {
		kind, value, err := contract.ParseDiskID(s.Data.ID)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(workDir, 0o755); err != nil {
			return err
		}
		p := filepath.Join(workDir, "data.img")
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		err = f.Truncate(BlankDataDiskSize)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		switch kind {
		case contract.IDSerial:
			addr := ""
			for sl := 5; sl < 0x1f && addr == ""; sl++ {
				if a := fmt.Sprintf("%02x.0", sl); !used[a] {
					addr = a
				}
			}
			m.Disks = append(m.Disks, qemutests.VirtioDisk(p, value, addr))
		case contract.IDPath:
			pci, ok := strings.CutPrefix(value, "pci-")
			addr, err := slot(pci)
			if !ok || err != nil {
				return fmt.Errorf("boottest: %s: %s: QEMU gives virtio disks by-path names pci-0000:00:<slot>.<fn>", b.Loc("storage.data.id"), s.Data.ID)
			}
			m.Disks = append(m.Disks, qemutests.VirtioDisk(p, "", addr))
		default:
			return fmt.Errorf("boottest: %s: %s: a QEMU virtio disk has no WWN; name it by serial: or path:", b.Loc("storage.data.id"), s.Data.ID)
		}
	}
	return nil
}

// GuestSubnet is the QEMU user network of the i-th guest uplink NIC:
// 10.0.3.0/24, 10.0.4.0/24, ...; QEMU's side of it (router, DHCP server,
// the host's loopback) is .2, its leases start at .15.
func GuestSubnet(i int) string { return fmt.Sprintf("10.0.%d.0/24", 3+i) }

// guestUplink is the QEMU device of network.guests.nics[i].
func guestUplink(b *boardcfg.Board, i int, id string, used map[string]bool) (string, error) {
	field := fmt.Sprintf("network.guests.nics[%d]", i)
	kind, value, err := contract.ParseNICID(id)
	if err != nil {
		return "", err
	}
	dev := fmt.Sprintf("virtio-net-pci,netdev=fwguest%d", i)
	switch kind {
	case contract.IDPCI:
		addr, err := slot(value)
		if err != nil {
			return "", fmt.Errorf("boottest: %s: %s: nic %s: %w", b.Loc(field), field, id, err)
		}
		if used[addr] {
			return "", fmt.Errorf("boottest: %s: %s: nic %s: PCI slot %s is taken by another NIC", b.Loc(field), field, id, addr)
		}
		used[addr] = true
		dev += ",addr=" + addr
	case contract.IDMAC:
		dev += ",mac=" + value
	case contract.IDName:
		return "", fmt.Errorf("boottest: %s: %s: nic %s: the kernel's name of a second NIC depends on probe order; name it by pci: or mac:", b.Loc(field), field, id)
	}
	return dev, nil
}

// slot turns a PCI address on bus 0 ("0000:00:03.0") into QEMU's addr=
// ("03.0").
func slot(pci string) (string, error) {
	rest, ok := strings.CutPrefix(pci, "0000:00:")
	if !ok || len(rest) != 4 {
		return "", fmt.Errorf("%q: QEMU's devices here sit on bus 0000:00", pci)
	}
	return rest, nil
}
