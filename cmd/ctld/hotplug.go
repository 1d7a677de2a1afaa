package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/fwbuild/fwbuild/contract"
)

// Hotplug: libxl runs a device's hotplug script when it adds or removes a
// vif or a vbd (tools/libs/light/libxl_linux.c in Xen 4.17): argv is the
// script, then "online"/"offline" (vif, with "type_if=vif") or
// "add"/"remove" (vbd); the environment has XENBUS_PATH (the backend's
// xenstore directory, relative to dom0's home, e.g. "backend/vif/1/0"),
// XENBUS_TYPE, and for a vif "vif" (the backend interface, e.g. "vif1.0").
// libxl waits for the script's exit status and, on failure, logs the
// backend's hotplug-error. Xen's own scripts (tools/hotplug/Linux/vif-bridge
// and block) are bash; the control domain has none, so the profile's guests
// name ctld (contract.CtldPath) as their script and ctld does the same work:
//
//   - vif online: enslave the vif to the bridge named in the backend's
//     "bridge" key and bring it up (IPv6 disabled on it first if it is on
//     the bridge); write hotplug-status=connected, which netback waits for
//     before it connects.
//   - vbd add: the backend's "params" is a file on the data disk (dom0 has
//     no qemu for a qdisk backend), so attach it to a free loop device and
//     write "node", "physical-device" (hex major:minor, which blkback
//     watches) and "physical-device-path"; a block device is used as is.
//   - vif offline: take the vif out of the bridge if it is still there.
//   - vbd remove: detach the loop device named in "node".

// hotplugEnv is what libxl passes to a hotplug script.
type hotplugEnv struct {
	Action  string // online, offline, add, remove
	Path    string // XENBUS_PATH
	Type    string // XENBUS_TYPE: vif or vbd
	VifName string // vif
}

// hotplugCall tells a hotplug invocation from an operator command: libxl
// always sets XENBUS_PATH, and the action is the first argument.
func hotplugCall(args []string, getenv func(string) string) (hotplugEnv, bool) {
	if len(args) < 1 || getenv("XENBUS_PATH") == "" {
		return hotplugEnv{}, false
	}
	switch args[0] {
	case "online", "offline", "add", "remove":
	default:
		return hotplugEnv{}, false
	}
	return hotplugEnv{Action: args[0], Path: getenv("XENBUS_PATH"), Type: getenv("XENBUS_TYPE"), VifName: getenv("vif")}, true
}

// hostOps is what hotplug and the network need from the kernel's network
// and block layers (netlink, loop devices); linux_host.go implements it.
type hostOps interface {
	// enslave puts link into bridge and brings it up.
	enslave(link, bridge string) error
	// release takes link out of its bridge; a missing link is not an error.
	release(link string) error
	// loopAttach attaches file to a free loop device and returns the
	// device's path and its major and minor numbers.
	loopAttach(file string, readOnly bool) (dev string, major, minor uint32, err error)
	// loopDetach detaches a loop device.
	loopDetach(dev string) error
	// blockDev returns a block device's numbers; ok is false for another
	// kind of file.
	blockDev(p string) (major, minor uint32, ok bool, err error)
}

func (a *agent) xsRead(ctx context.Context, key string) (string, error) {
	out, err := a.run.output(ctx, a.xenstore("xenstore-read"), key)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(out), "\n"), nil
}

func (a *agent) xsWrite(ctx context.Context, kv ...string) error {
	_, err := a.run.output(ctx, a.xenstore("xenstore-write"), kv...)
	return err
}

// hotplug does one hotplug script's work. On failure it writes the reason
// to the backend's hotplug-error and hotplug-status=error, as Xen's scripts
// do, so that libxl logs it.
func (a *agent) hotplug(ctx context.Context, h hostOps, e hotplugEnv) error {
	err := a.doHotplug(ctx, h, e)
	if err != nil && (e.Action == "online" || e.Action == "add") {
		msg := fmt.Sprintf("ctld hotplug %s %s: %v", e.Action, e.Path, err)
		a.xsWrite(ctx, path.Join(e.Path, "hotplug-error"), msg, path.Join(e.Path, "hotplug-status"), "error")
		return errors.New(msg)
	}
	return err
}

func (a *agent) doHotplug(ctx context.Context, h hostOps, e hotplugEnv) error {
	kind := e.Type
	if kind == "" {
		// backend/<kind>/<domid>/<devid>
		if f := strings.Split(e.Path, "/"); len(f) == 4 {
			kind = f[1]
		}
	}
	switch {
	case kind == "vif" && e.Action == "online":
		if !contract.ValidIfName(e.VifName) {
			return fmt.Errorf("vif name %q from libxl is not an interface name", e.VifName)
		}
		br, err := a.xsRead(ctx, path.Join(e.Path, "bridge"))
		if err != nil || br == "" {
			return fmt.Errorf("no bridge for %s in %s/bridge (give the NIC bridge=): %v", e.VifName, e.Path, err)
		}
		// A vif on a bridge with IPv6 disabled (the guest bridge) gets it
		// disabled too before it comes up: no link-local address of the
		// control domain's, no solicitations toward the guest.
		if b, err := a.sys.readFile(ipv6Disable(br)); err == nil && strings.TrimSpace(string(b)) == "1" {
			if err := a.sys.writeFile(ipv6Disable(e.VifName), []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("%s: disable IPv6 as on bridge %s: %w", e.VifName, br, err)
			}
		}
		if err := h.enslave(e.VifName, br); err != nil {
			return fmt.Errorf("add %s to bridge %s: %w", e.VifName, br, err)
		}
		return a.xsWrite(ctx, path.Join(e.Path, "hotplug-status"), "connected")
	case kind == "vif" && e.Action == "offline":
		if contract.ValidIfName(e.VifName) {
			h.release(e.VifName) // the backend may have removed it already
		}
		return nil
	case kind == "vbd" && e.Action == "add":
		params, err := a.xsRead(ctx, path.Join(e.Path, "params"))
		if err != nil || params == "" {
			return fmt.Errorf("no params (disk target) in %s: %v", e.Path, err)
		}
		mode, _ := a.xsRead(ctx, path.Join(e.Path, "mode"))
		dev := params
		maj, min, isBlock, err := h.blockDev(params)
		if err != nil {
			return fmt.Errorf("disk target %s: %w", params, err)
		}
		if !isBlock {
			if dev, maj, min, err = h.loopAttach(params, mode == "r"); err != nil {
				return fmt.Errorf("loop device for %s: %w", params, err)
			}
			if err := a.xsWrite(ctx, path.Join(e.Path, "node"), dev); err != nil {
				h.loopDetach(dev)
				return err
			}
		}
		if err := a.xsWrite(ctx,
			path.Join(e.Path, "physical-device"), fmt.Sprintf("%x:%x", maj, min),
			path.Join(e.Path, "physical-device-path"), dev,
			path.Join(e.Path, "hotplug-status"), "connected"); err != nil {
			if !isBlock {
				h.loopDetach(dev)
			}
			return err
		}
		return nil
	case kind == "vbd" && e.Action == "remove":
		node, err := a.xsRead(ctx, path.Join(e.Path, "node"))
		if err != nil || !strings.HasPrefix(node, "/dev/loop") {
			return nil // a block device, or never attached
		}
		return h.loopDetach(node)
	}
	return fmt.Errorf("unsupported hotplug call: %s for a %q device (%s)", e.Action, kind, e.Path)
}
