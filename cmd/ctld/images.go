package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// Guest images: the files the guest-images manifest (inside the signed
// payload) lists come from the install media's images partition (found by
// its GPT name, contract.ImagesPartitionName) or from a URL, and are copied
// to the data disk (contract.DataImageFile) once. A copy is written to a
// temporary name, hashed as it is written, and renamed only when its size
// and SHA-256 are the manifest's: a file at its final name was verified, so
// later boots do not hash it again.

// mediaMount is where ctld mounts the images partition, read-only.
const mediaMount = "/run/fwbuild/media"

// mediaOps mounts the install media's images partition.
type mediaOps interface {
	// mountRO mounts dev at target read-only, trying the file systems
	// fwbuild may write there.
	mountRO(dev, target string) error
}

// findImagesPartition finds the partition whose GPT name is
// contract.ImagesPartitionName.
func (a *agent) findImagesPartition() (string, error) {
	found, err := a.partitionsNamed(contract.ImagesPartitionName)
	switch {
	case err != nil:
		return "", err
	case len(found) == 0:
		return "", errNoImagesPartition
	case len(found) > 1:
		return "", fmt.Errorf("%d partitions named %s (%s): detach all but one install medium", len(found), contract.ImagesPartitionName, strings.Join(found, ", "))
	}
	return found[0], nil
}

// partitionsNamed lists the partitions with a GPT name (the kernel gives it
// as PARTNAME in the partition's uevent), as /dev paths.
func (a *agent) partitionsNamed(name string) ([]string, error) {
	ues, err := a.sys.glob("/sys/class/block/*/uevent")
	if err != nil {
		return nil, err
	}
	var found []string
	for _, ue := range ues {
		b, err := a.sys.readFile(ue)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line == "PARTNAME="+name {
				found = append(found, "/dev/"+path.Base(path.Dir(ue)))
			}
		}
	}
	return found, nil
}

// waitImagesPartition waits up to cfg.MediaWait for the images partition:
// a USB key is enumerated, probed by usb-storage (which waits delay_use, 1 s,
// before scanning) and its partitions read in the background after the
// kernel's init, so it may appear after ctld asks. Without any USB
// mass-storage interface (a boot from flash, no key attached) it gives up
// after cfg.MediaGrace instead of the whole wait, so a board whose images
// come from a URL is not held back.
func (a *agent) waitImagesPartition(ctx context.Context) (string, error) {
	start := time.Now()
	for {
		dev, err := a.findImagesPartition()
		if err == nil || !errors.Is(err, errNoImagesPartition) {
			return dev, err
		}
		waited := time.Since(start)
		if waited >= a.cfg.MediaWait || (waited >= a.cfg.MediaGrace && !a.usbStoragePresent()) {
			return "", fmt.Errorf("%w after %v", err, waited.Round(100*time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(a.cfg.Poll):
		}
	}
}

// usbStoragePresent says whether a USB mass-storage interface (class 08)
// is attached, probed or not yet.
func (a *agent) usbStoragePresent() bool {
	ifs, _ := a.sys.glob("/sys/bus/usb/devices/*/bInterfaceClass")
	for _, p := range ifs {
		if b, err := a.sys.readFile(p); err == nil && strings.TrimSpace(string(b)) == "08" {
			return true
		}
	}
	return false
}

var errNoImagesPartition = fmt.Errorf("no partition named %s (is the install media attached?)", contract.ImagesPartitionName)

// provisionImages copies every file of the manifest that is not on the data
// disk yet, printing a line per file copied, or a FAILED images line. root
// prefixes the data disk's and the media's paths (tests).
func (a *agent) provisionImages(ctx context.Context, root string, m mediaOps, client *http.Client) error {
	if !a.sys.exists(a.cfg.ImagesManifest) {
		return nil
	}
	b, err := a.sys.readFile(a.cfg.ImagesManifest)
	if err != nil {
		return a.imagesFailed(err)
	}
	man, err := contract.ParseGuestImages(b)
	if err != nil {
		return a.imagesFailed(err)
	}
	mounted := false
	for _, f := range man.Files {
		dst := root + contract.DataImageFile(f.Image, f.Name)
		if st, err := os.Stat(dst); err == nil && st.Size() == f.Size {
			continue
		}
		var src io.ReadCloser
		from := f.URL
		if f.MediaPath != "" {
			if !mounted {
				dev, err := a.waitImagesPartition(ctx)
				if err == nil {
					a.sys.mkdirAll(root + mediaMount)
					err = m.mountRO(dev, root+mediaMount)
				}
				if err != nil && f.URL == "" {
					return a.imagesFailed(fmt.Errorf("%s/%s: %w", f.Image, f.Name, err))
				}
				mounted = err == nil
			}
			if mounted {
				p, err := mediaFile(root+mediaMount, f.MediaPath)
				if err != nil {
					return a.imagesFailed(fmt.Errorf("%s/%s: %w", f.Image, f.Name, err))
				}
				if src, err = os.Open(p); err != nil && f.URL == "" {
					return a.imagesFailed(fmt.Errorf("%s/%s: %w", f.Image, f.Name, err))
				}
				from = "media:" + f.MediaPath
			}
		}
		if src == nil {
			if src, err = httpGet(ctx, client, f.URL); err != nil {
				return a.imagesFailed(fmt.Errorf("%s/%s: %w", f.Image, f.Name, err))
			}
			from = f.URL
		}
		err := copyVerified(dst, src, f.Size, f.SHA256)
		src.Close()
		if err != nil {
			return a.imagesFailed(fmt.Errorf("%s/%s from %s: %w", f.Image, f.Name, from, err))
		}
		a.say(contract.GuestImageCopied{Image: f.Image, Name: f.Name, Size: f.Size, From: from})
	}
	return nil
}

func (a *agent) imagesFailed(err error) error {
	a.say(contract.Failed{Step: "images", Reason: err.Error()})
	return err
}

// mediaFile resolves a manifest's media path inside the mounted partition;
// the path is relative and may not climb out.
func mediaFile(mount, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if rel == "" || strings.HasPrefix(rel, "/") || clean != "/"+rel {
		return "", fmt.Errorf("media path %q: want a clean relative path", rel)
	}
	return filepath.Join(mount, filepath.FromSlash(clean)), nil
}

func httpGet(ctx context.Context, client *http.Client, url string) (io.ReadCloser, error) {
	if url == "" {
		return nil, errors.New("neither the install media nor a URL has it")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// copyVerified copies at most size+1 bytes of src to dst through a
// temporary file and renames it only if the size and SHA-256 match.
func copyVerified(dst string, src io.Reader, size int64, sum string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(src, size+1))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%d bytes, the manifest says %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("SHA-256 %s, the manifest pins %s: not used", got, sum)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// imageClient fetches guest images: no overall timeout (images are large),
// but one for the connection and the response headers.
func imageClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t}
}
