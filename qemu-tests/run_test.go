package qemutests

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeQEMU writes a shell script standing in for qemu-system-x86_64 at the
// exec boundary: it receives the real arguments (saved to args.txt one per
// line) and runs body.
func fakeQEMU(t *testing.T, body string) (bin, argsFile string) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Fatal("fake QEMU needs /bin/sh")
	}
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args.txt")
	bin = filepath.Join(dir, "fake-qemu")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + argsFile + "\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile
}

// noEnv isolates runs from the caller's FWBUILD_* variables.
func noEnv(string) string { return "" }

func TestRunFakeSuccess(t *testing.T) {
	bin, _ := fakeQEMU(t, `echo "booting"; sleep 0.3; printf 'stage '; sleep 0.2; echo "one done"; echo 'ready v=42' >&2; sleep 30`)
	logPath := filepath.Join(t.TempDir(), "console.log")
	var seen []string
	var pid int
	res, err := Run(context.Background(), Machine{Binary: bin}, []Marker{
		Substring("boot", "booting", time.Second),
		Substring("stage", "stage one", 2*time.Second),
		Regexp("ready", `ready v=(\d+)`, 2*time.Second),
	}, Options{
		LogPath:  logPath,
		OnMarker: func(m Match) { seen = append(seen, m.Marker.Name) },
		OnStart:  func(p int) { pid = p },
		getenv:   noEnv,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "boot,stage,ready" {
		t.Errorf("OnMarker saw %s", got)
	}
	if len(res.Matches) != 3 {
		t.Fatalf("%d matches, want 3", len(res.Matches))
	}
	// QEMU's stderr is part of the stream.
	if v := res.Matches[2].Values; len(v) != 1 || v[0] != "42" {
		t.Errorf("ready values = %q, want [42]", v)
	}
	// "stage one" is printed 0.5s after start; timings are since the start.
	if at := res.Matches[1].At; at < 400*time.Millisecond || at > 10*time.Second {
		t.Errorf("stage matched at %v, want about 0.5s", at)
	}
	if res.Matches[0].At > res.Matches[1].At || res.Matches[1].At > res.Matches[2].At || res.Elapsed != res.Matches[2].At {
		t.Errorf("timings out of order: %v %v %v elapsed %v", res.Matches[0].At, res.Matches[1].At, res.Matches[2].At, res.Elapsed)
	}
	if res.Accel != "tcg" || res.Scale != tcgTimeoutScale || res.LogPath != logPath {
		t.Errorf("accel %q scale %v log %q", res.Accel, res.Scale, res.LogPath)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "booting\nstage one done\n"; !strings.HasPrefix(string(log), want) {
		t.Errorf("log = %q, want it to start with %q", log, want)
	}
	assertGroupGone(t, pid)
}

func TestRunFakeMarkerTimeout(t *testing.T) {
	var lines strings.Builder
	for i := 1; i <= 60; i++ {
		lines.WriteString("echo line" + strconv.Itoa(i) + "\n")
	}
	bin, _ := fakeQEMU(t, lines.String()+`echo "first marker"; printf 'no newline yet'; sleep 30`)
	logPath := filepath.Join(t.TempDir(), "console.log")
	var pid int
	begin := time.Now()
	_, err := Run(context.Background(), Machine{Binary: bin}, []Marker{
		Substring("first", "first marker", 5*time.Second),
		Regexp("second", `second (\w+)`, 200*time.Millisecond),
	}, Options{LogPath: logPath, TimeoutScale: 2, OnStart: func(p int) { pid = p }, getenv: noEnv})
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Run took %v; the fake sleeps 30s, the marker allowed 0.4s", took)
	}
	var me *MarkerError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v (%T), want *MarkerError", err, err)
	}
	if !errors.Is(err, ErrMarkerTimeout) {
		t.Errorf("reason %v, want ErrMarkerTimeout", me.Reason)
	}
	if me.Missing.Name != "second" || me.Index != 1 || me.Of != 2 || len(me.Matched) != 1 || me.Matched[0].Marker.Name != "first" {
		t.Errorf("missing %q index %d/%d matched %d", me.Missing.Name, me.Index, me.Of, len(me.Matched))
	}
	if me.Timeout != 400*time.Millisecond {
		t.Errorf("timeout %v, want 200ms x scale 2", me.Timeout)
	}
	if len(me.Tail) != 40 || me.Tail[0] != "line23" || me.Tail[38] != "first marker" || me.Tail[39] != "no newline yet" {
		t.Errorf("tail (%d lines) = %q", len(me.Tail), me.Tail)
	}
	if me.LogPath != logPath {
		t.Errorf("LogPath %q, want %q", me.LogPath, logPath)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.HasPrefix(string(log), "line1\nline2\n") || !strings.HasSuffix(string(log), "no newline yet") {
		t.Errorf("log does not hold the whole console: %q", log)
	}
	msg := err.Error()
	for _, want := range []string{`marker 2/2 "second"`, "`second (\\w+)`", "timed out after 400ms", `previous marker "first"`,
		"last 40 console lines:", "  | line23\n", "  | no newline yet\n", "full console log: " + logPath} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q:\n%s", want, msg)
		}
	}
	assertGroupGone(t, pid)
}

// A line matching Options.Abort ends the run at once, while a marker is
// still awaited; the same line after every marker has matched does not.
func TestRunFakeAbort(t *testing.T) {
	bin, _ := fakeQEMU(t, `echo "booting"; echo "agent: FAILED guests: bad region"; sleep 30`)
	var pid int
	begin := time.Now()
	_, err := Run(context.Background(), Machine{Binary: bin}, []Marker{
		Substring("boot", "booting", 5*time.Second),
		Substring("ready", "agent: ready", time.Minute),
	}, Options{Abort: regexp.MustCompile(`agent: FAILED`), OnStart: func(p int) { pid = p }, getenv: noEnv})
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Run took %v: the abort line should have ended it", took)
	}
	var me *MarkerError
	if !errors.As(err, &me) || !errors.Is(err, ErrAborted) || me.Missing.Name != "ready" {
		t.Fatalf("err = %v, want a MarkerError for \"ready\" with ErrAborted", err)
	}
	if !strings.Contains(err.Error(), "agent: FAILED guests: bad region") {
		t.Errorf("error does not quote the failure line:\n%v", err)
	}
	assertGroupGone(t, pid)

	bin, _ = fakeQEMU(t, `echo "agent: ready"; echo "agent: FAILED later"; sleep 30`)
	if _, err := Run(context.Background(), Machine{Binary: bin}, []Marker{Substring("ready", "agent: ready", 5*time.Second)},
		Options{Abort: regexp.MustCompile(`agent: FAILED`), getenv: noEnv}); err != nil {
		t.Errorf("abort line after the last marker: %v", err)
	}
}

// Then types into the console (QEMU's standard input) once its marker has
// matched, and the next marker sees the answer.
func TestRunFakeTypes(t *testing.T) {
	bin, _ := fakeQEMU(t, `echo "login: "; read line; echo "you typed <$line>"; sleep 30`)
	prompt := Substring("prompt", "login:", 5*time.Second)
	prompt.Then = "ctld status\n"
	res, err := Run(context.Background(), Machine{Binary: bin}, []Marker{prompt, Substring("answer", "you typed <ctld status>", 5*time.Second)},
		Options{getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 2 {
		t.Fatalf("%d matches", len(res.Matches))
	}
	if _, err := Run(context.Background(), Machine{Binary: bin, Serial: SerialSocket}, []Marker{prompt}, Options{getenv: noEnv}); err == nil || !strings.Contains(err.Error(), "SerialStdio") {
		t.Errorf("typing on a socket console: %v", err)
	}
}

// A marker that times out types its Diagnose; what the console prints
// then is in the error (the late marker among it does not rescue the run),
// and the run ends after DiagnoseFor.
func TestRunFakeDiagnose(t *testing.T) {
	bin, _ := fakeQEMU(t, `echo "guest running"; read line; echo "probe <$line>: vcpu blocked"; echo "root mounted"; sleep 30`)
	stalled := Substring("root", "root mounted", 300*time.Millisecond)
	stalled.Diagnose = "xl list\n"
	stalled.DiagnoseFor = 2 * time.Second
	begin := time.Now()
	_, err := Run(context.Background(), Machine{Binary: bin}, []Marker{Substring("running", "guest running", 5*time.Second), stalled}, Options{TimeoutScale: 1, getenv: noEnv})
	var me *MarkerError
	if !errors.As(err, &me) || !errors.Is(err, ErrMarkerTimeout) || me.Missing.Name != "root" {
		t.Fatalf("err = %v, want the root marker's timeout", err)
	}
	if !strings.Contains(me.Diagnosis, "probe <xl list>: vcpu blocked") || !strings.Contains(me.Diagnosis, "root mounted") {
		t.Errorf("diagnosis %q", me.Diagnosis)
	}
	if msg := err.Error(); !strings.Contains(msg, `after the timeout, "xl list" printed:`) || !strings.Contains(msg, "  > probe <xl list>: vcpu blocked\n") {
		t.Errorf("error message:\n%s", msg)
	}
	if took := time.Since(begin); took < 2*time.Second || took > 10*time.Second {
		t.Errorf("run took %v: want the 0.3 s timeout and the 2 s diagnosis", took)
	}
}

func TestRunFakeExit(t *testing.T) {
	bin, _ := fakeQEMU(t, `echo "qemu-system-x86_64: -drive file=x: Could not open 'x'" >&2; exit 1`)
	_, err := Run(context.Background(), Machine{Binary: bin}, []Marker{Substring("x", "never", time.Minute)},
		Options{LogPath: filepath.Join(t.TempDir(), "log"), getenv: noEnv})
	if !errors.Is(err, ErrQEMUExited) {
		t.Fatalf("err = %v, want ErrQEMUExited", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "exit status 1") || !strings.Contains(msg, "Could not open 'x'") {
		t.Errorf("message lacks the exit status or QEMU's error:\n%s", msg)
	}

	// Output printed right before a clean exit still counts, even the
	// unfinished last line a non-literal regexp waits on.
	bin, _ = fakeQEMU(t, `printf 'done 7'; exit 0`)
	res, err := Run(context.Background(), Machine{Binary: bin}, []Marker{Regexp("done", `done (\d+)`, time.Minute)},
		Options{LogPath: filepath.Join(t.TempDir(), "log"), getenv: noEnv})
	if err != nil || res.Matches[0].Values[0] != "7" {
		t.Fatalf("got %v, %v", res.Matches, err)
	}
}

// Cancelling mid-run kills the fake and the child it started (a stand-in
// for any helper QEMU forks) and reports the context's error.
func TestRunFakeCancel(t *testing.T) {
	bin, _ := fakeQEMU(t, `sleep 300 & echo "child $!"; echo started; sleep 300`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pid, child int
	_, err := Run(ctx, Machine{Binary: bin}, []Marker{
		Regexp("child", `child (\d+)`, 5*time.Second),
		Substring("started", "started", 5*time.Second),
		Substring("never", "never", time.Hour),
	}, Options{
		LogPath: filepath.Join(t.TempDir(), "log"),
		OnStart: func(p int) { pid = p },
		OnMarker: func(m Match) {
			if m.Marker.Name == "child" {
				child, _ = strconv.Atoi(m.Values[0])
			}
			if m.Marker.Name == "started" {
				cancel()
			}
		},
		getenv: noEnv,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var me *MarkerError
	if !errors.As(err, &me) || me.Missing.Name != "never" {
		t.Errorf("err = %v, want a MarkerError for \"never\"", err)
	}
	if child == 0 {
		t.Fatal("no child pid")
	}
	assertGroupGone(t, pid)
	assertDead(t, child, 5*time.Second)
}

func TestRunFakeCommandLine(t *testing.T) {
	bin, argsFile := fakeQEMU(t, `echo ok`)
	dir := t.TempDir()
	code := filepath.Join(dir, "CODE,1.fd")
	vars := filepath.Join(dir, "VARS.fd")
	usb := filepath.Join(dir, "usb.img")
	for p, n := range map[string]int{code: 4096, vars: 1024, usb: 512} {
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := Machine{Binary: bin, Firmware: PflashOVMF(code, vars), Disks: []Disk{USBKey(usb)}, Args: []string{"-s"}}
	res, err := Run(context.Background(), m, []Marker{Substring("ok", "ok", time.Minute)},
		Options{LogPath: filepath.Join(dir, "log"), getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(strings.Split(strings.TrimSpace(string(raw)), "\n"), " ")
	for _, want := range []string{
		"-machine q35 -accel tcg -cpu qemu64,+svm -m 2048 -smp 2 -nic none -nographic -no-reboot -monitor none -serial stdio",
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + strings.ReplaceAll(code, ",", ",,") + " ",
		"-device qemu-xhci,id=fwxhci -drive if=none,id=fwusb0,format=raw,file=" + usb + ",snapshot=on -device usb-storage,bus=fwxhci.0,drive=fwusb0",
		" -s",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("command line lacks %q:\n%s", want, args)
		}
	}
	// The variable store is a private copy, gone after the run.
	i := strings.Index(args, "unit=1,file=")
	if i < 0 {
		t.Fatalf("no VARS drive:\n%s", args)
	}
	copyPath := strings.Fields(args[i+len("unit=1,file="):])[0]
	if copyPath == vars {
		t.Error("VARS template passed to QEMU instead of a copy")
	}
	if _, err := os.Stat(copyPath); !os.IsNotExist(err) {
		t.Errorf("VARS copy %s left behind (%v)", copyPath, err)
	}
	if got := strings.Join(res.Cmdline[1:], " "); got != args {
		t.Errorf("Result.Cmdline = %s\nQEMU got %s", got, args)
	}
}

func TestRunSettingsErrors(t *testing.T) {
	ctx := context.Background()
	mk := []Marker{Substring("x", "x", 0)}
	dir := t.TempDir()
	odd := filepath.Join(dir, "odd.bin")
	os.WriteFile(odd, make([]byte, 1000), 0o644)
	cases := []struct {
		m    Machine
		opts Options
		mk   []Marker
		want string
	}{
		{Machine{Binary: "no-such-qemu-binary"}, Options{}, mk, "apt-get install -y qemu-system-x86"},
		{Machine{Binary: "sh", Firmware: BIOS(odd)}, Options{}, mk, "multiple of 64 KiB"},
		{Machine{Binary: "sh", Firmware: PflashOVMF(filepath.Join(dir, "nope.fd"), odd)}, Options{}, mk, "nope.fd"},
		{Machine{Binary: "sh", Firmware: SplitPflash(odd, 2000)}, Options{}, mk, "split pflash"},
		{Machine{Binary: "sh", Disks: []Disk{USBKey(filepath.Join(dir, "usb.img"))}}, Options{}, mk, "usb.img"},
		{Machine{Binary: "sh", Accel: "hvf"}, Options{}, mk, `accel "hvf"`},
		{Machine{Binary: "sh"}, Options{getenv: func(string) string { return "fast" }}, mk, "FWBUILD_TIMEOUT_SCALE"},
		{Machine{Binary: "sh"}, Options{}, nil, "no markers"},
		{Machine{Binary: "sh"}, Options{}, []Marker{{Name: "empty"}}, "neither Text nor Pattern"},
	}
	for _, c := range cases {
		if c.opts.getenv == nil {
			c.opts.getenv = noEnv
		}
		_, err := Run(ctx, c.m, c.mk, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", c.m, err, c.want)
		}
	}
}

func TestAccelAndScale(t *testing.T) {
	env := func(kvm, scale string) func(string) string {
		return func(k string) string {
			switch k {
			case envKVM:
				return kvm
			case envTimeoutScale:
				return scale
			}
			return ""
		}
	}
	works := func() error { return nil }
	broken := func() error { return errors.New("no /dev/kvm") }
	cases := []struct {
		asked, kvmEnv string
		check         func() error
		want          string
	}{
		{"", "", works, "tcg"},   // TCG by default even where KVM works
		{"", "1", works, "kvm"},  // asked through the environment
		{"", "1", broken, "tcg"}, // asked, not usable: fall back
		{"kvm", "", works, "kvm"},
		{"kvm", "", broken, "tcg"},
		{"tcg", "1", works, "tcg"}, // an explicit setting beats the environment
	}
	for _, c := range cases {
		got, err := resolveAccel(c.asked, env(c.kvmEnv, ""), c.check, slog.New(slog.DiscardHandler))
		if err != nil || got != c.want {
			t.Errorf("resolveAccel(%q, FWBUILD_KVM=%q) = %q, %v; want %q", c.asked, c.kvmEnv, got, err, c.want)
		}
	}

	scales := []struct {
		opt    float64
		accel  string
		envVal string
		want   float64
	}{
		{0, "tcg", "", tcgTimeoutScale},
		{0, "kvm", "", kvmTimeoutScale},
		{0, "tcg", "10", 10},
		{0, "kvm", "0.5", 0.5},
		{2, "tcg", "10", 2}, // the option wins over the environment
	}
	for _, c := range scales {
		got, err := resolveScale(c.opt, c.accel, env("", c.envVal))
		if err != nil || got != c.want {
			t.Errorf("resolveScale(%v, %s, env %q) = %v, %v; want %v", c.opt, c.accel, c.envVal, got, err, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "x"} {
		if _, err := resolveScale(0, "tcg", env("", bad)); err == nil {
			t.Errorf("FWBUILD_TIMEOUT_SCALE=%q accepted", bad)
		}
	}
}

// assertGroupGone checks that no live process is left in the process group
// Run created for QEMU (its pid is the group id). SIGKILL is delivered
// asynchronously and the killed children's new parent reaps them in its own
// time, so it polls briefly and ignores zombies.
func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	if pgid <= 0 {
		t.Fatal("no pid reported by OnStart")
	}
	end := time.Now().Add(5 * time.Second)
	for {
		live := groupMembers(pgid)
		if len(live) == 0 {
			return
		}
		if time.Now().After(end) {
			t.Errorf("process group %d still has live processes: %v", pgid, live)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupMembers lists the live (non-zombie) processes in group pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok && st.pgrp == pgid && st.state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

type stat struct {
	state string
	ppid  int
	pgrp  int
}

// procStat reads /proc/pid/stat; fields after the command name (which may
// hold spaces and parentheses) start after the last ')'.
func procStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 3 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	return stat{state: f[0], ppid: ppid, pgrp: pgrp}, true
}

// assertDead waits up to d for pid to be gone or a zombie (a zombie runs no
// code; reaping it is its new parent's business).
func assertDead(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		st, ok := procStat(pid)
		if !ok || st.state == "Z" {
			return
		}
		if time.Now().After(end) {
			cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("process %d (%s) still alive (state %s) after %v", pid, strings.ReplaceAll(string(cmd), "\x00", " "), st.state, d)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
