package main

import (
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/cache"
)

// defaultCacheMax is the cache's size after a build unless FWBUILD_CACHE_MAX
// says otherwise: room for a few boards' stages (a qemu-q35 build's entries,
// kernel sources and packages included, take about 4 GiB).
const defaultCacheMax = 16 << 30

// pruneMinAge protects entries a build running now may still read: a hit
// takes no lock, and the longest stage (the kernel) reads its sources for
// half an hour on a slow machine.
const pruneMinAge = time.Hour

// cacheMax is FWBUILD_CACHE_MAX: a size, or 0 or "off" for no limit.
func cacheMax() (int64, error) {
	v := os.Getenv("FWBUILD_CACHE_MAX")
	switch v {
	case "":
		return defaultCacheMax, nil
	case "off":
		return 0, nil
	}
	n, err := boardcfg.ParseSize(v)
	if err != nil {
		return 0, fmt.Errorf("FWBUILD_CACHE_MAX: %v: give a size such as 16GiB, or off", err)
	}
	return int64(n), nil
}

// pruneAfterBuild keeps the cache within FWBUILD_CACHE_MAX; a failure to
// prune is a warning, never a failed build.
func (e *env) pruneAfterBuild(dir string) {
	max, err := cacheMax()
	if err != nil {
		e.log.Warn("cache: not pruned", "why", err)
		return
	}
	if max == 0 {
		return
	}
	c, err := cache.Open(dir)
	if err != nil {
		return
	}
	res, err := c.Prune(e.ctx, cache.PruneOptions{MaxBytes: max, MinAge: pruneMinAge})
	if err != nil {
		e.log.Warn("cache: prune failed", "dir", dir, "err", err)
		return
	}
	if len(res.Removed) > 0 {
		e.log.Info("cache: pruned the least recently used entries", "dir", dir, "removed", len(res.Removed),
			"freed", boardcfg.Size(res.Before-res.After).String(), "now", boardcfg.Size(res.After).String())
	}
}

func (e *env) cacheCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "show or prune the build cache",
		Long: "The cache keeps every stage's result by the hash of its inputs. After each build fwbuild removes\n" +
			"the least recently used entries beyond FWBUILD_CACHE_MAX (default 16GiB; off for no limit),\n" +
			"never one used in the last hour or being built.",
		Example: "  fwbuild cache du\n  fwbuild cache prune --max-size 4GiB",
		Args:    noArgs,
	}
	c.AddCommand(e.cacheDuCommand(), e.cachePruneCommand())
	return c
}

// openCache opens the cache --cache (or the default) names.
func (e *env) openCache() (string, *cache.Dir, error) {
	dir, err := e.cache()
	if err != nil {
		return "", nil, err
	}
	c, err := cache.Open(dir)
	return dir, c, err
}

type cacheKind struct {
	Kind     string    `json:"kind"`
	Entries  int       `json:"entries"`
	Bytes    int64     `json:"bytes"`
	LastUsed time.Time `json:"last_used"`
}

func (e *env) cacheDuCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "du",
		Short:   "the cache's size by kind of entry",
		Example: "  fwbuild cache du\n  fwbuild cache du --json",
		Args:    noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			dir, c, err := e.openCache()
			if err != nil {
				return err
			}
			us, err := c.Usage(e.ctx)
			if err != nil {
				return err
			}
			byKind := map[string]*cacheKind{}
			var total int64
			for _, u := range us {
				k := byKind[u.Kind]
				if k == nil {
					k = &cacheKind{Kind: u.Kind}
					byKind[u.Kind] = k
				}
				k.Entries++
				k.Bytes += u.Bytes
				if u.LastUsed.After(k.LastUsed) {
					k.LastUsed = u.LastUsed
				}
				total += u.Bytes
			}
			kinds := make([]cacheKind, 0, len(byKind))
			for _, k := range byKind {
				kinds = append(kinds, *k)
			}
			sort.Slice(kinds, func(i, j int) bool { return kinds[i].Bytes > kinds[j].Bytes })
			if e.json {
				return e.printJSON(struct {
					Dir   string      `json:"dir"`
					Bytes int64       `json:"bytes"`
					Kinds []cacheKind `json:"kinds"`
				}{dir, total, kinds})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "kind\tentries\tsize\tlast used\t\n")
			for _, k := range kinds {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", k.Kind, k.Entries, human(k.Bytes), k.LastUsed.Format(time.DateTime))
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t\t\n", "total", len(us), human(total))
			return tw.Flush()
		}),
	}
}

func (e *env) cachePruneCommand() *cobra.Command {
	var maxSize string
	var dry bool
	var minAge time.Duration
	c := &cobra.Command{
		Use:     "prune [--max-size SIZE] [--min-age D] [--dry-run]",
		Short:   "remove the least recently used entries beyond a size",
		Example: "  fwbuild cache prune --max-size 4GiB\n  fwbuild cache prune --max-size 0 --min-age 0   # empty it",
		Args:    noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			max, err := cacheMax()
			if maxSize != "" {
				var n boardcfg.Size
				n, err = boardcfg.ParseSize(maxSize)
				if err != nil {
					return usagef("--max-size: %v", err)
				}
				max = int64(n)
			}
			if err != nil {
				return err
			}
			dir, c, err := e.openCache()
			if err != nil {
				return err
			}
			res, err := c.Prune(e.ctx, cache.PruneOptions{MaxBytes: max, MinAge: minAge, DryRun: dry})
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(res)
			}
			verb := "removed"
			if dry {
				verb = "would remove"
			}
			for _, u := range res.Removed {
				fmt.Fprintf(e.stdout, "%s %s/%s (%s, last used %s)\n", verb, u.Kind, u.Key, human(u.Bytes), u.LastUsed.Format(time.DateTime))
			}
			fmt.Fprintf(e.stdout, "cache %s: %s -> %s (limit %s)\n", dir, human(res.Before), human(res.After), human(max))
			if res.Kept {
				fmt.Fprintf(e.stdout, "entries used in the last %v or being built were kept: run again later, or lower --min-age\n", minAge)
			}
			return nil
		}),
	}
	c.Flags().StringVar(&maxSize, "max-size", "", "size to bring the cache down to (default FWBUILD_CACHE_MAX, else 16GiB)")
	c.Flags().DurationVar(&minAge, "min-age", pruneMinAge, "keep entries used more recently than this")
	c.Flags().BoolVar(&dry, "dry-run", false, "list what would be removed")
	return c
}

// human is a byte count for people.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
