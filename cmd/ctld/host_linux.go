package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linuxHost is hostOps and netOps on the running kernel: netlink for links
// and bridges, ioctls for loop devices.
type linuxHost struct{}

func (linuxHost) enslave(link, bridge string) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("%s: %w", link, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a bridge", bridge, br.Type())
	}
	// Like vif-bridge's set_mtu: a port with a larger MTU than the bridge's
	// would drop the bridge's MTU.
	if mtu := br.Attrs().MTU; mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("%s: set mtu %d: %w", link, mtu, err)
		}
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("%s: set master %s: %w", link, bridge, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: up: %w", link, err)
	}
	return nil
}

func (linuxHost) release(link string) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return nil
	}
	return netlink.LinkSetNoMaster(l)
}

func (linuxHost) blockDev(p string) (major, minor uint32, ok bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, 0, false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return unix.Major(st.Rdev), unix.Minor(st.Rdev), true, nil
	case unix.S_IFREG:
		return 0, 0, false, nil
	}
	return 0, 0, false, fmt.Errorf("neither a regular file nor a block device")
}

// loopAttach is what losetup does: a free device from /dev/loop-control,
// the file bound with LOOP_SET_FD, its name recorded for losetup -a.
func (linuxHost) loopAttach(file string, readOnly bool) (string, uint32, uint32, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w (is CONFIG_BLK_DEV_LOOP in the dom0 kernel?)", err)
	}
	defer ctl.Close()
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(file, flag, 0)
	if err != nil {
		return "", 0, 0, err
	}
	defer f.Close()
	// Another attach may take the free device between GET_FREE and
	// SET_FD (EBUSY): ask again.
	for try := 0; try < 8; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", 0, 0, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, flag, 0)
		if err != nil {
			return "", 0, 0, err
		}
		err = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(f.Fd()))
		if errors.Is(err, unix.EBUSY) {
			lf.Close()
			continue
		}
		if err != nil {
			lf.Close()
			return "", 0, 0, fmt.Errorf("%s: LOOP_SET_FD: %w", dev, err)
		}
		info := unix.LoopInfo64{}
		copy(info.File_name[:], file)
		if readOnly {
			info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		unix.IoctlLoopSetStatus64(int(lf.Fd()), &info) // the name is cosmetic
		var st unix.Stat_t
		err = unix.Fstat(int(lf.Fd()), &st)
		lf.Close()
		if err != nil {
			return "", 0, 0, err
		}
		return dev, unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
	}
	return "", 0, 0, errors.New("no free loop device after 8 tries")
}

func (linuxHost) loopDetach(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("%s: LOOP_CLR_FD: %w", dev, err)
	}
	return nil
}

// links lists the network interfaces with what a NIC identifier matches.
func (linuxHost) links() ([]linkInfo, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []linkInfo
	for _, l := range ls {
		a := l.Attrs()
		li := linkInfo{Name: a.Name, MAC: strings.ToLower(a.HardwareAddr.String()), Type: l.Type()}
		// /sys/class/net/<if>/device links to the PCI function
		// (virtio-net: to the virtio device under it).
		if p, err := filepath.EvalSymlinks("/sys/class/net/" + a.Name + "/device"); err == nil {
			li.PCI = lastPCIAddr(p)
		}
		out = append(out, li)
	}
	return out, nil
}

// lastPCIAddr is the last path element of a sysfs device path that is a
// PCI address ("/sys/devices/pci0000:00/0000:00:03.0/virtio1" ->
// "0000:00:03.0").
func lastPCIAddr(p string) string {
	f := strings.Split(p, "/")
	for i := len(f) - 1; i >= 0; i-- {
		if len(f[i]) == 12 && f[i][4] == ':' && f[i][7] == ':' && f[i][10] == '.' {
			return f[i]
		}
	}
	return ""
}

func (h linuxHost) ensureBridge(name string, mac net.HardwareAddr) error {
	if err := h.addBridge(name, mac); err != nil {
		return err
	}
	return h.linkUp(name)
}

// addBridge creates the bridge (or finds it) and sets its MAC; the
// management bridge takes its first NIC's, so the DHCP server sees the
// NIC's address whatever guests' vifs join later.
func (linuxHost) addBridge(name string, mac net.HardwareAddr) error {
	l, err := netlink.LinkByName(name)
	if err == nil {
		if l.Type() != "bridge" {
			return fmt.Errorf("%s exists and is a %s, not a bridge", name, l.Type())
		}
	} else {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return err
		}
	}
	if len(mac) == 6 {
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("%s: set address %s: %w", name, mac, err)
		}
	}
	return nil
}

func (linuxHost) linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func (linuxHost) addrs(name string) ([]string, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out, nil
}

func (linuxHost) setStatic(bridge string, addr *net.IPNet, gw net.IP) error {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("%s: address %s: %w", bridge, addr, err)
	}
	if gw != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("%s: default route via %s: %w", bridge, gw, err)
		}
	}
	return nil
}

func (linuxHost) openDisk(dev string, write bool) (*os.File, int64, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR | unix.O_EXCL
	}
	f, err := os.OpenFile(dev, flag, 0)
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

func (linuxHost) rereadPartitions(f *os.File) error {
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("BLKRRPART: %w", err)
	}
	return nil
}

func (linuxHost) mountExt4(dev, target string) error {
	return unix.Mount(dev, target, "ext4", unix.MS_NOATIME, "")
}

// mountRO mounts the images partition; fwbuild writes it as FAT or ext4.
func (linuxHost) mountRO(dev, target string) error {
	var errs []error
	for _, fs := range []string{"vfat", "ext4"} {
		err := unix.Mount(dev, target, fs, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", fs, err))
	}
	return fmt.Errorf("mount %s read-only: %w", dev, errors.Join(errs...))
}
