package initramfs

import (
	"strings"

	"github.com/fwbuild/fwbuild/contract"
)

// The stock guest image's scripts. They run under busybox sh and print the
// lines of contract/guestos.go; @NAME@ is the image's name (the default when
// no fwbuild.guest= is given), @P@ the lines' prefix.

// guestOSCommon is shared by both inits: a kernel parameter's value, and
// the guest's name.
const guestOSCommon = `param() {
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1"=*) echo "${w#*=}"; return ;; esac
	done
}
name=$(param @NAMEPARAM@)
[ -n "$name" ] || name=@NAME@
say() { echo "@P@$name: $*"; }
`

// guestOSInitrdInit is the initramfs's /init: the disk and network drivers,
// then the root file system from the virtual disk (root=, default
// /dev/xvda, as Xen's blkfront names the first disk).
const guestOSInitrdInitTmpl = `#!/bin/sh
# fwbuild stock guest image, initramfs: load the drivers, mount the root
# file system from the virtual disk, start its init.
export PATH=/bin
busybox mount -t devtmpfs devtmpfs /dev
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
cat() { busybox cat "$@"; }
` + guestOSCommon + `fail() {
	say "FAILED $1: $2"
	busybox sync
	busybox poweroff -f
	while :; do busybox sleep 3600; done
}
# A driver for hardware the machine lacks (blkfront outside Xen, virtio
# under Xen) fails to load: that is expected.
for m in $(cat @MODULES@); do busybox insmod "$m" 2>/dev/null; done
root=$(param root)
[ -n "$root" ] || root=/dev/xvda
i=0
while [ ! -b "$root" ]; do
	i=$((i + 1))
	[ $i -le 200 ] || fail root "no block device $root after 20 s"
	busybox usleep 100000
done
busybox mount -t ext4 -o rw "$root" /newroot || fail root "cannot mount $root as ext4"
say "root $root mounted"
busybox mount -o move /dev /newroot/dev
busybox umount /proc /sys
exec busybox switch_root /newroot /sbin/init
`

// guestOSRootInitTmpl is the root file system's /sbin/init: an address by
// DHCP on eth0, the URL of fwbuild.fetch= fetched, the marker on the disk
// looked for (or written), then poweroff or run (fwbuild.after=).
const guestOSRootInitTmpl = `#!/bin/sh
# fwbuild stock guest image, root file system init.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
` + guestOSCommon + `after=$(param @AFTERPARAM@)
hostname -F /etc/hostname
ip link set lo up
if ip link set eth0 up 2>/dev/null &&
	udhcpc -i eth0 -s /etc/fwbuild/udhcpc.script -n -q -t 20 -T 1 >/dev/null 2>&1 && [ -f /tmp/lease ]; then
	. /tmp/lease
	say "dhcp eth0 ip=$ip router=$router"
	url=$(param @FETCHPARAM@)
	if [ -z "$url" ]; then
		:
	elif timeout 60 wget -q -O /tmp/fetched "$url"; then
		say "fetched $url bytes=$(($(wc -c </tmp/fetched))) sha256=$(sha256sum /tmp/fetched | cut -d' ' -f1)"
	else
		say "FAILED fetch: $url"
	fi
else
	say "FAILED dhcp: no lease on eth0"
fi
m=/var/lib/fwbuild-guest/marker
if [ -s $m ]; then
	say "marker found $(cat $m)"
else
	tok=$(cat /proc/sys/kernel/random/uuid)
	echo "$tok" >$m.new && sync && mv $m.new $m && sync
	if [ -s $m ]; then say "marker written $tok"; else say "FAILED marker: cannot write $m"; fi
fi
case "$after" in
@RUN@)
	say "running"
	while :; do sleep 3600; done
	;;
*)
	sync
	mount -o remount,ro /
	poweroff -f
	;;
esac
`

// guestOSUdhcpcScript configures what udhcpc obtained and leaves it in
// /tmp/lease for the init.
const guestOSUdhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ifconfig "$interface" 0.0.0.0 ;;
bound | renew)
	ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
	r=${router%% *}
	[ -z "$r" ] || route add default gw "$r" dev "$interface"
	echo "ip=$ip router=$r" >/tmp/lease
	;;
esac
exit 0
`

func guestOSScript(tmpl, name string) string {
	return strings.NewReplacer("@NAME@", name, "@P@", contract.GuestOSPrefix, "@NAMEPARAM@", contract.GuestNameParam,
		"@AFTERPARAM@", contract.GuestAfterParam, "@FETCHPARAM@", contract.GuestFetchParam, "@RUN@", contract.AfterRun,
		"@MODULES@", guestOSModules).Replace(tmpl)
}

func guestOSInitrdInit(name string) string { return guestOSScript(guestOSInitrdInitTmpl, name) }

func guestOSRootInit(name string) string { return guestOSScript(guestOSRootInitTmpl, name) }

// installerHookTmpl is a startup hook of Debian's installer
// (lib/debian-installer-startup.d/, sourced by its init in order, before
// the first screen): it loads the virtual-disk drivers the netboot initrd
// lacks (the installer fetches its own from the mirror later) and reports
// each disk. Sourced, so it must not exit, and names its variables apart.
const installerHookTmpl = `# fwbuild: virtual disk drivers, and a line per disk on the console.
for fwbuild_m in $(cat @MODULES@); do insmod "$fwbuild_m" 2>/dev/null || true; done
fwbuild_i=0
while [ $fwbuild_i -lt 20 ]; do
	fwbuild_found=
	for fwbuild_d in /sys/block/xvd* /sys/block/vd*; do [ -e "$fwbuild_d/size" ] && fwbuild_found=1; done
	[ -n "$fwbuild_found" ] && break
	sleep 1
	fwbuild_i=$((fwbuild_i + 1))
done
fwbuild_name=$(for w in $(cat /proc/cmdline); do case "$w" in @NAMEPARAM@=*) echo "${w#*=}" ;; esac; done)
[ -n "$fwbuild_name" ] || fwbuild_name=@NAME@
for fwbuild_d in /sys/block/xvd* /sys/block/vd*; do
	[ -e "$fwbuild_d/size" ] || continue
	echo "@P@$fwbuild_name: disk ${fwbuild_d##*/} bytes=$(($(cat "$fwbuild_d/size") * 512))" >/dev/console
done
`
