package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/fwbuild/fwbuild/initramfs"
)

func (r *run) initramfs(ctx context.Context) (stageResult, error) {
	b := r.Board
	cd := b.ControlDomain
	var roots, pkgIDs []string
	for _, name := range cd.Toolstack.Packages {
		f := r.comps[name]
		roots = append(roots, f.Root)
		pkgIDs = append(pkgIDs, name+"="+f.SHA256)
	}
	k := key("initramfs/1", r.tool, jsonKey(cd.Commands), jsonKey(cd.Toolstack), jsonKey(pkgIDs), string(cd.Compression), r.Epoch.UTC().Format(time.RFC3339))
	return r.stage(ctx, "initramfs", k, func(dir string) error {
		arch, err := initramfs.Build(ctx, initramfs.Spec{
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
