// Package qemutests starts QEMU, reads the guest's serial console as a stream
// and waits for an ordered list of markers, each with its own timeout. It is
// the harness of fwbuild's end-to-end boot tests and of `fwbuild test`.
//
// A run is: Run(ctx, Machine{...}, markers, Options{...}). The Machine is
// plain settings (machine, CPU, memory, firmware, disks); Run turns them into a
// qemu-system-x86_64 command line, starts QEMU in its own process group, feeds
// everything QEMU writes (the serial console on stdio, or on a unix-socket
// chardev, plus QEMU's own diagnostics) to a log file and to the marker
// matcher, and returns when the last marker has matched or the current one
// cannot match any more (timeout, QEMU exited, context done). QEMU is killed
// (SIGKILL to its process group) before Run returns, whatever happened, and
// Pdeathsig kills it if the Go process itself dies.
//
// # Markers
//
// A marker is a substring (Text) or a regular expression (Pattern). Markers
// match in order: marker i is searched only in console output after the end
// of marker i-1's match (later in the same line is fine). Matching is per
// line, on the line with carriage returns, ANSI escape sequences and other
// control characters removed (OVMF and the UEFI Shell colour and position
// their text), so a marker never spans lines. Chunk boundaries do not matter:
// bytes are assembled into lines first. A substring or a literal regexp also
// matches in the unfinished last line as soon as it is there (prompts such as
// "Shell> " end without a newline); any other regexp matches a line once it is
// complete, or, for an unfinished line, once the console has been quiet for
// Options.Quiet (default 500ms), so that greedy groups such as (\d+) never
// capture half a number that the next chunk would complete.
//
// # Timeouts and acceleration
//
// Each marker's Timeout counts from the previous marker's match (the first
// from QEMU's start) and is a base value for a fast machine; the timeout that
// applies is Timeout × scale. The scale is Options.TimeoutScale if set, else
// $FWBUILD_TIMEOUT_SCALE if set, else 3 under TCG and 1 under KVM.
//
// TCG is the default (-accel tcg -cpu qemu64,+svm): on this project's hosts
// KVM cannot run OVMF (emulation failure) and Xen needs +svm under TCG. KVM is
// used only when asked (Machine.Accel "kvm" or $FWBUILD_KVM=1) and /dev/kvm
// answers; otherwise Run falls back to TCG and says so (Result.Accel, slog).
//
// # Why not hugelgupf/vmtest or Netflix/go-expect
//
// vmtest (in the module graph) is built around booting a kernel+initramfs
// with -kernel and VMTEST_* variables, kills only the QEMU process through
// exec.CommandContext (no process group, no Pdeathsig), and leaves timing and
// log capture to the caller. go-expect would add a pty (CR/LF translation,
// terminal modes) and a module that is not in go.sum for what is, here, a
// line splitter, a loop over a few regexps and a timer. The custom harness is
// a few hundred lines and does exactly what the tests need: ordered markers
// with per-marker scaled timeouts, timings and captures, a saved log, the
// tail on failure, and no stray QEMU.
package qemutests
