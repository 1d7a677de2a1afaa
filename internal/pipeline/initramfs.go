package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/initramfs"
)

// hostFiles is the host config ctld reads at boot (network, data disk,
// guests' disks), when the profile has any of those.
func hostFiles(b *boardcfg.Board) ([]initramfs.File, error) {
	hc := b.HostConfig()
	if hc.Network == nil && hc.Storage == nil {
		return nil, nil
	}
	data, err := hc.Encode()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: %w", contract.HostConfigPath, err)
	}
	return []initramfs.File{{Path: contract.HostConfigPath, Data: data}}, nil
}

func (r *run) initramfs(ctx context.Context) (stageResult, error) {
	b := r.Board
	cd := b.ControlDomain
	var roots, pkgIDs []string
	for _, name := range cd.Toolstack.Packages {
		f := r.comps[name]
		roots = append(roots, f.Root)
		pkgIDs = append(pkgIDs, name+"="+f.SHA256)
	}
	extra, err := hostFiles(b)
	if err != nil {
		return stageResult{}, err
	}
	var compressor map[string]string
	if t := cd.Compression.Tool(); t != "" {
		compressor = toolVersions(ctx, t)
	}
	k := key("initramfs/2", r.tool, jsonKey(cd.Commands), jsonKey(cd.Toolstack), jsonKey(pkgIDs), string(cd.Compression), jsonKey(compressor), r.Epoch.UTC().Format(time.RFC3339), jsonKey(extra))
	return r.stage(ctx, "initramfs", k, func(dir string) error {
		arch, err := initramfs.Build(ctx, initramfs.Spec{
			Extra:       extra,
			Commands:    cd.Commands,
			Toolstack:   cd.Toolstack.Files,
			Symlinks:    cd.Toolstack.Symlinks,
			Modules:     cd.Toolstack.Modules,
			Roots:       roots,
			Compression: cd.Compression,
			BuildTags:   initramfs.DefaultBuildTags(),
			Epoch:       r.Epoch,
			TempDir:     dir,
			Log:         r.log(),
		})
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		return writeArchive(dir, "initramfs", arch)
	})
}
