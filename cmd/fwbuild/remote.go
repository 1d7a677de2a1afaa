package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/provision"
	"github.com/fwbuild/fwbuild/remote"
)

// remoteOptions are the flags every `fwbuild remote` command shares.
type remoteOptions struct {
	host, user, passwordFile, fingerprint string
}

// readPasswordFile reads an account's password: the file's first line.
func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("remote: password file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("remote: password file %s: its first line is empty", path)
	}
	return pw, nil
}

func (e *env) remoteCommand() *cobra.Command {
	var o remoteOptions
	c := &cobra.Command{
		Use:   "remote --host H[:port] --password-file F [--fingerprint SHA256] <command>",
		Short: "manage a running unit over its Redfish API: list, create, start, stop, console, delete",
		Long: "remote speaks the Redfish service ctld runs on the unit's management address (HTTPS, Basic auth).\n" +
			"Give --fingerprint as the sha256= of the unit's `fwbuild-ctld: redfish` console line: the\n" +
			"certificate is self-signed, and only that pin makes it trusted. The password (the unit's label)\n" +
			"is read from a file so it stays out of the process list and the shell history.",
		Example: "  fwbuild remote --host 10.0.2.15 --password-file unit.pw --fingerprint 3f0c...e1 list\n" +
			"  fwbuild remote --host 10.0.2.15 --password-file unit.pw --fingerprint 3f0c...e1 create web --image debian --disk root:1GiB:debian --nic auto --start",
	}
	pf := c.PersistentFlags()
	pf.StringVar(&o.host, "host", "", "the unit's management address, host[:port] (port 443 by default)")
	pf.StringVar(&o.user, "user", provision.DefaultUser, "account name")
	pf.StringVar(&o.passwordFile, "password-file", "", "file holding the account's password (its first line)")
	pf.StringVar(&o.fingerprint, "fingerprint", "", "the unit certificate's SHA-256 (sha256= of ctld's redfish line); without it the system's roots must trust the certificate")
	c.MarkPersistentFlagFilename("password-file")

	client := func() (*remote.Client, error) {
		if o.host == "" {
			return nil, usagef("--host is required (the unit's management address)")
		}
		if o.passwordFile == "" {
			return nil, usagef("--password-file is required (a file holding the account's password)")
		}
		pw, err := readPasswordFile(o.passwordFile)
		if err != nil {
			return nil, err
		}
		return remote.New(remote.Options{Host: o.host, User: o.user, Password: pw, Fingerprint: o.fingerprint})
	}
	withClient := func(f func(ctx context.Context, cl *remote.Client, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cl, err := client()
			if err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return runError{err}
			}
			if err := f(e.ctx, cl, args); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return runError{err}
			}
			return nil
		}
	}
	one := func(use, short string, f func(ctx context.Context, cl *remote.Client, name string) error) *cobra.Command {
		return &cobra.Command{Use: use + " NAME", Short: short, Args: exactlyOneName,
			Example: "  fwbuild remote --host 10.0.2.15 --password-file unit.pw --fingerprint <sha256> " + use + " web",
			RunE:    withClient(func(ctx context.Context, cl *remote.Client, args []string) error { return f(ctx, cl, args[0]) })}
	}

	list := &cobra.Command{Use: "list", Short: "list the host and its VMs with their power state", Args: noArgs,
		Example: "  fwbuild remote --host 10.0.2.15 --password-file unit.pw --fingerprint <sha256> list --json",
		RunE: withClient(func(ctx context.Context, cl *remote.Client, _ []string) error {
			systems, err := cl.List(ctx)
			if err != nil {
				return err
			}
			if e.json {
				return e.printJSON(systems)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTYPE\tPOWER\tMEMORY\tCPUS")
			for _, s := range systems {
				mem := fmt.Sprintf("%g GiB", s.MemorySummary.TotalSystemMemoryGiB)
				if s.Oem != nil && s.Oem.Fwbuild.MemoryMiB > 0 {
					mem = fmt.Sprintf("%d MiB", s.Oem.Fwbuild.MemoryMiB)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", s.ID, s.SystemType, s.PowerState, mem, s.ProcessorSummary.Count)
			}
			return tw.Flush()
		})}

	var cr struct {
		image, typ, cmdline string
		memMiB, vcpus       int
		disks, nics         []string
		start, autostart    bool
	}
	create := &cobra.Command{Use: "create NAME --image IMAGE [--disk NAME:SIZE[:IMAGE]]... [--nic auto|MAC]... [--start]",
		Short: "define a VM on the unit's data disk (and start it with --start)", Args: exactlyOneName,
		Example: "  fwbuild remote --host 10.0.2.15 --password-file unit.pw --fingerprint <sha256> create web --image debian --memory 256 --disk root:1GiB:debian --nic auto --start",
		RunE: withClient(func(ctx context.Context, cl *remote.Client, args []string) error {
			spec := rf.CreateSystem{Name: args[0], ProcessorSummary: rf.ProcessorSummary{Count: cr.vcpus}}
			spec.Oem.Fwbuild = rf.CreateFwbuild{Image: cr.image, MemoryMiB: cr.memMiB, Type: cr.typ, Cmdline: cr.cmdline, Autostart: cr.autostart}
			for _, d := range cr.disks {
				disk, err := remote.ParseDisk(d)
				if err != nil {
					return usagef("--disk: %v", err)
				}
				spec.Oem.Fwbuild.Disks = append(spec.Oem.Fwbuild.Disks, disk)
			}
			for _, n := range cr.nics {
				if n == "auto" {
					n = ""
				}
				spec.Oem.Fwbuild.NICs = append(spec.Oem.Fwbuild.NICs, rf.CreateNIC{MAC: n})
			}
			cs, err := cl.Create(ctx, spec)
			if err != nil {
				return err
			}
			if cr.start {
				if err := cl.Reset(ctx, cs.ID, rf.ResetOn); err != nil {
					return fmt.Errorf("created %s, but it did not start: %w", cs.ID, err)
				}
				if cs, err = cl.Get(ctx, cs.ID); err != nil {
					return err
				}
			}
			if e.json {
				return e.printJSON(cs)
			}
			_, err = fmt.Fprintf(e.stdout, "created %s (%s)\n", cs.ID, cs.PowerState)
			return err
		})}
	cf := create.Flags()
	cf.StringVar(&cr.image, "image", "", "guest image on the unit's data disk whose kernel and initrd boot the VM (e.g. debian)")
	cf.IntVar(&cr.memMiB, "memory", 256, "memory in MiB")
	cf.IntVar(&cr.vcpus, "vcpus", 1, "virtual CPUs")
	cf.StringVar(&cr.typ, "type", "", "pv or pvh (default: the unit's, pvh)")
	cf.StringVar(&cr.cmdline, "cmdline", "", "more kernel command line for the VM")
	cf.StringArrayVar(&cr.disks, "disk", nil, "a disk NAME:SIZE[:IMAGE] (IMAGE: start as that image's root file system), repeatable")
	cf.StringArrayVar(&cr.nics, "nic", nil, "a NIC on the unit's bridge: auto or a MAC, repeatable")
	cf.BoolVar(&cr.start, "start", false, "start the VM once it is created")
	cf.BoolVar(&cr.autostart, "autostart", false, "start the VM whenever the unit boots")

	var graceful bool
	action := func(verb, typ string, name string, ctx context.Context, cl *remote.Client) error {
		if err := cl.Reset(ctx, name, typ); err != nil {
			return err
		}
		cs, err := cl.Get(ctx, name)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(cs)
		}
		_, err = fmt.Fprintf(e.stdout, "%s %s (%s)\n", verb, name, cs.PowerState)
		return err
	}
	start := one("start", "power a VM on", func(ctx context.Context, cl *remote.Client, name string) error {
		return action("started", rf.ResetOn, name, ctx, cl)
	})
	stop := one("stop", "power a VM off (at once; --graceful asks it to shut down)", func(ctx context.Context, cl *remote.Client, name string) error {
		if graceful {
			return action("asked to shut down", rf.ResetGracefulShutdown, name, ctx, cl)
		}
		return action("stopped", rf.ResetForceOff, name, ctx, cl)
	})
	stop.Flags().BoolVar(&graceful, "graceful", false, "ask the guest to shut down instead of ending it")
	console := one("console", "print a VM's console log (its end); interactively: ssh USER@HOST console NAME", func(ctx context.Context, cl *remote.Client, name string) error {
		b, err := cl.ConsoleLog(ctx, name)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(map[string]string{"Id": name, "ConsoleLog": string(b)})
		}
		_, err = e.stdout.Write(b)
		return err
	})
	del := one("delete", "destroy a VM and free its storage on the data disk", func(ctx context.Context, cl *remote.Client, name string) error {
		if err := cl.Delete(ctx, name); err != nil {
			return err
		}
		if e.json {
			return e.printJSON(map[string]any{"Id": name, "Deleted": true})
		}
		_, err := fmt.Fprintf(e.stdout, "deleted %s\n", name)
		return err
	})
	c.AddCommand(list, create, start, stop, console, del)
	return c
}

func exactlyOneName(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("give one VM name, not %d arguments", len(args))
	}
	return nil
}
