package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fiano takes no context, and assembling a full slot takes ~15 s: the
// Context variants still return within moments of the cancellation.
func TestBuildSPIContextCancelled(t *testing.T) {
	s := q35Spec16(ovmfCode(t), padPE(grubTestApp(t), 8170376))
	for _, after := range []time.Duration{0, 1500 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan time.Time, 1)
		time.AfterFunc(after, func() { cancelled <- time.Now(); cancel() })
		if after == 0 {
			<-ctx.Done()
		}
		_, err := BuildSPI(ctx, s)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel after %v: err = %v, want context.Canceled", after, err)
		}
		if d := time.Since(<-cancelled); d > time.Second {
			t.Errorf("cancel after %v: returned %v later", after, d)
		}
		_, err = SlotBudget(ctx, s)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("SlotBudgetContext on a cancelled ctx: %v", err)
		}
	}
	// The abandoned run does not poison the next one.
	if _, err := SlotBudget(context.Background(), q35Spec16(ovmfCode(t), nil)); err != nil {
		t.Fatalf("SlotBudget after cancelled builds: %v", err)
	}
}

func TestWriteUSBContextCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := WriteUSB(ctx, filepath.Join(dir, "usb.img"), USBSpec{Size: 64 << 20, Payload: xenEFI(t), Name: "qemu-q35", Epoch: testEpoch})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a cancelled write left %v", entries)
	}
}

// A 4 GiB image takes its payload's size on disk, not 4 GiB.
func TestWriteUSBSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "usb.img")
	payload := xenEFI(t)
	if err := WriteUSB(context.Background(), p, USBSpec{Size: 4 << 30, Payload: payload, Name: "qemu-q35", Epoch: testEpoch}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > int64(len(payload))+16<<20 {
		t.Errorf("4 GiB image allocates %d bytes for a %d-byte payload", used, len(payload))
	}
}
