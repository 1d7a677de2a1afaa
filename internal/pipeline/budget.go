package pipeline

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fwbuild/fwbuild/image"
)

// SizeRow is one part of the flash payload.
type SizeRow struct {
	Component string  `json:"component"`
	Bytes     int64   `json:"bytes"`
	Share     float64 `json:"share"` // of the budget
}

// SizeTable says where the bytes of the flash payload go, against the room
// in the SPI payload slot.
type SizeTable struct {
	Rows     []SizeRow `json:"rows"`
	Payload  int64     `json:"payload"`
	Budget   int64     `json:"budget"`
	Headroom int64     `json:"headroom"` // negative: overflow
	Limit    string    `json:"limit,omitempty"`
	// Guests is the guests region, when the board has one.
	Guests *RegionUse `json:"guests_region,omitempty"`
	// Volumes is every firmware volume's free space before and after the
	// launcher went in (launcher placements only).
	Volumes []image.VolumeUse `json:"volumes,omitempty"`
}

// RegionUse is how much of a chip region its content takes.
type RegionUse struct {
	Region string `json:"region"`
	Guests int    `json:"guests"`
	Bytes  int64  `json:"bytes"`
	Size   int64  `json:"size"`
}

func newSizeTable(parts []SizeRow, payload, budget int64, limit string) SizeTable {
	t := SizeTable{Payload: payload, Budget: budget, Headroom: budget - payload, Limit: limit}
	var sum int64
	for _, p := range parts {
		sum += p.Bytes
		t.Rows = append(t.Rows, p)
	}
	// What is left is GRUB itself: its core, modules, grub.cfg and the memdisk's tar headers.
	t.Rows = append(t.Rows, SizeRow{Component: "GRUB core, modules, grub.cfg, tar headers", Bytes: payload - sum})
	for i := range t.Rows {
		if budget > 0 {
			t.Rows[i].Share = float64(t.Rows[i].Bytes) / float64(budget)
		}
	}
	return t
}

// Write prints the table for a terminal.
func (t SizeTable) Write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "component\tbytes\tshare of budget\t\n")
	for _, r := range t.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t\n", r.Component, r.Bytes, 100*r.Share)
	}
	fmt.Fprintf(tw, "flash payload\t%d\t%.1f%%\t\n", t.Payload, 100*float64(t.Payload)/float64(max(t.Budget, 1)))
	fmt.Fprintf(tw, "%s\t%d\t\t\n", t.budgetName(), t.Budget)
	if t.Headroom >= 0 {
		fmt.Fprintf(tw, "headroom\t%d\t%.1f%%\t\n", t.Headroom, 100*float64(t.Headroom)/float64(max(t.Budget, 1)))
	} else {
		fmt.Fprintf(tw, "OVERFLOW\t%d\t\t\n", -t.Headroom)
	}
	tw.Flush()
	if t.Limit != "" {
		fmt.Fprintf(w, "(budget bound by: %s)\n", t.Limit)
	}
	for _, v := range t.Volumes {
		name := v.Name
		if v.Path != "" {
			name = v.Path + "/" + v.Name
		}
		mark := ""
		if v.Changed {
			mark = " (changed)"
		}
		fmt.Fprintf(w, "volume %s: %d bytes, free %d before, %d after%s\n", name, v.Length, v.FreeBefore, v.FreeAfter, mark)
	}
	if g := t.Guests; g != nil {
		fmt.Fprintf(w, "guests region %s: %d guest(s), %d of %d bytes (%.1f%%), headroom %d\n",
			g.Region, g.Guests, g.Bytes, g.Size, 100*float64(g.Bytes)/float64(max(g.Size, 1)), g.Size-g.Bytes)
	}
}

// BudgetError is a payload that does not fit its slot, with the table.
type BudgetError struct {
	Table SizeTable
	Err   error
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("size budget: the flash payload is %d bytes, %d over the %d-byte slot: %v", e.Table.Payload, -e.Table.Headroom, e.Table.Budget, e.Err)
}

func (e *BudgetError) Unwrap() error { return e.Err }

// budgetName names what bounds the payload: its own region, or a slot in a volume.
func (t SizeTable) budgetName() string {
	if strings.HasPrefix(t.Limit, "region ") {
		return "region budget"
	}
	return "slot budget"
}
