package pipeline

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/hvcore"
	"github.com/fwbuild/fwbuild/initramfs"
)

// xenOptions is the board's Xen command line plus what fwbuild derives from
// the dom0 settings, so the two can never disagree.
func xenOptions(b *boardcfg.Board) string {
	d := b.Hypervisor.Dom0
	mib := uint64(d.Memory) >> 20
	opts := strings.TrimSpace(b.Hypervisor.Options) + fmt.Sprintf(" dom0_mem=%dM,max:%dM", mib, mib)
	if d.VCPUs > 0 {
		opts += fmt.Sprintf(" dom0_max_vcpus=%d", d.VCPUs)
	}
	return opts
}

func (r *run) payload(ctx context.Context, k kernelOut, ird, gst, gi stageResult) (stageResult, error) {
	b := r.Board
	xen, _ := b.Component(b.Hypervisor.Xen)
	grub, hasGrub := b.Component("grub")
	grubID := ""
	if hasGrub {
		grubID = string(grub.SHA256)
	}
	opts := xenOptions(b)
	// The flash payload's bytes depend on the host's xz and grub-mkimage.
	tools := r.hostTools(ctx)
	flashCmdline := b.Hypervisor.Dom0.Cmdline
	if p, err := r.pinnedGuestsParam(gst); err != nil {
		return stageResult{}, err
	} else if p != "" {
		flashCmdline = strings.TrimSpace(flashCmdline + " " + p)
	}
	// Both payloads name the unit region: a server booting its USB key
	// still has its chip, and its credentials there.
	espBase := b.Hypervisor.Dom0.Cmdline
	if p := unitParam(b); p != "" {
		flashCmdline = strings.TrimSpace(flashCmdline + " " + p)
		espBase = strings.TrimSpace(espBase + " " + p)
	}
	// A signed build's control domain carries the owner's certificate, which
	// it checks update artefacts (and unit records) against.
	var ownerPEM []byte
	if r.owner != nil {
		ownerPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.owner.DB.Raw})
	}
	// The version both payloads carry: the profile's, plus a hash of
	// everything the payloads are made of (the stage key without the version).
	content := key("content/1", r.tool, string(xen.SHA256), k.id, ird.Key, gst.Key, gi.Key, opts, espBase, flashCmdline, grubID, r.Epoch.UTC().Format(time.RFC3339), jsonKey(tools), string(ownerPEM))
	// The floor of downgrades rides along (ctld refuses artefacts below it);
	// only a profile that sets one changes its content hash.
	minArg := ""
	if b.Update != nil && b.Update.MinVersion != "" {
		minArg = " " + contract.MinVersionArg(b.Update.MinVersion)
	}
	// So does a device GUID of the profile's own (ctld's FirmwareInventory
	// reports it for fwupd; the default one ctld derives from the board).
	if b.Update != nil && len(b.Update.GUIDs) > 0 {
		minArg += " " + contract.UpdateGUIDParam + "=" + b.UpdateGUIDs()[0]
	}
	if minArg != "" {
		content = key("content/1+min", content, minArg)
	}
	version := b.ReleaseVersion().String() + "+" + content[:8]
	r.result.Version = version
	ids := " " + contract.VersionArg(version) + minArg + " " + contract.BoardParam + "=" + b.Name + " " + contract.BootParam + "="
	espCmdline := strings.TrimSpace(espBase + ids + contract.BootESP)
	flashCmdline = strings.TrimSpace(flashCmdline + ids + contract.BootFlash)
	pk := key("payload/3", content, espCmdline, flashCmdline)
	return r.stage(ctx, "payload", pk, func(dir string) error {
		xenEFI, err := r.comps.Read(xen.Name, "efi", b)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		kernel, err := os.ReadFile(k.path)
		if err != nil {
			return fmt.Errorf("payload: kernel: %w", err)
		}
		initrd, err := ird.read("initramfs")
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		// The ESP has room for everything: guests ride along with the control domain.
		espInitrd, flashInitrd := initrd, initrd
		if len(b.Guests) > 0 {
			guests, err := gst.read("guests.cpio")
			if err != nil {
				return fmt.Errorf("payload: %w", err)
			}
			espInitrd = appendArchive(initrd, guests)
			if guestsParam(b) == "" {
				flashInitrd = espInitrd
			}
		}
		// The guest-images manifest is in both payloads, so the launcher's
		// hash (and Secure Boot's signature) covers what ctld trusts.
		if len(b.GuestImages) > 0 {
			m, err := manifestArchive(gi, r.Epoch)
			if err != nil {
				return fmt.Errorf("payload: %w", err)
			}
			espInitrd, flashInitrd = appendArchive(espInitrd, m), appendArchive(flashInitrd, m)
		}
		if ownerPEM != nil {
			arch, err := initramfs.Pack([]initramfs.File{{Path: contract.OwnerCertificate, Data: ownerPEM}}, r.Epoch)
			if err != nil {
				return fmt.Errorf("payload: owner certificate: %w", err)
			}
			espInitrd, flashInitrd = appendArchive(espInitrd, arch.Data), appendArchive(flashInitrd, arch.Data)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		cfg, err := hvcore.XenConfig(hvcore.XenConfigSpec{XenOptions: opts, Dom0Cmdline: espCmdline})
		if err != nil {
			return fmt.Errorf("payload: xen.cfg (%s): %w", b.Loc("hypervisor"), err)
		}
		esp, err := hvcore.UnifiedEFI(xenEFI, hvcore.Sections{Config: cfg, Kernel: kernel, Ramdisk: espInitrd})
		if err != nil {
			return fmt.Errorf("payload: unified xen.efi: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "payload-esp.efi"), esp, 0o644); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !hasGrub {
			return errors.New("payload: the board has no \"grub\" component (grub-efi-amd64-bin with files.modules) for the flash payload")
		}
		modules, err := r.comps.File("grub", "modules", b)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		xenGz, err := r.comps.Read(xen.Name, "gz", b)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		flash, err := hvcore.BuildGrub(ctx, hvcore.GrubSpec{
			ModuleDir:   modules,
			XenGz:       xenGz,
			Kernel:      kernel,
			Initrd:      flashInitrd,
			XenOptions:  opts,
			Dom0Cmdline: flashCmdline,
			Mtime:       r.Epoch,
			TempDir:     dir,
		})
		if err != nil {
			return fmt.Errorf("payload: GRUB flash payload: %w", err)
		}
		members, _ := json.Marshal(flash.Members)
		if err := os.WriteFile(filepath.Join(dir, "flash-members.json"), members, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "payload-flash.efi"), flash.Data, 0o644)
	})
}

// hostTools are the first lines of `--version` of the host tools whose
// output lands in artefacts; asked once per build, for the key and the manifest.
func (r *run) hostTools(ctx context.Context) map[string]string {
	if r.tools == nil {
		r.tools = toolVersions(ctx, "xz", "grub-mkimage")
	}
	return r.tools
}

// toolVersions maps each host tool to the first line of its --version
// ("missing" if it does not run): part of the keys of stages whose bytes
// depend on it.
func toolVersions(ctx context.Context, tools ...string) map[string]string {
	v := map[string]string{}
	for _, t := range tools {
		out, err := exec.CommandContext(ctx, t, "--version").Output()
		if err != nil {
			v[t] = "missing"
			continue
		}
		line, _, _ := strings.Cut(string(out), "\n")
		v[t] = strings.TrimSpace(line)
	}
	return v
}
