package boardcfg

import (
	"strings"
	"testing"
)

// withImages is valid plus a busybox and an installer component, two
// guest images and guests using them.
var withImages = strings.Replace(valid, "hypervisor:\n", `  - name: kernel
    package: linux-image-6.1.0-47-cloud-amd64-unsigned
    version: 6.1.170-3
    sha256: 554cf5c453f93c86d9af849d98f21826fe9ea3d0eeec6a5c6ed603a5788ff054
    files: {bzimage: boot/vmlinuz, config: boot/config}
  - name: busybox
    package: busybox-static
    version: 1:1.35.0-4+deb12u1+b1
    sha256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744
    files: {busybox: bin/busybox}
  - name: di
    package: debian-installer-12-netboot-amd64
    version: 20230607+deb12u15
    sha256: 499e4609976bfd47c1b3025382fb5dddeb023350921142b919c89c4d24bd7f9b
    files: {kernel: linux, initrd: initrd.gz}
hypervisor:
`, 1) + `guest_images:
  - name: debian
    kernel: kernel
    busybox: busybox
    modules: [lib/modules/6.1.0-47-cloud-amd64/kernel/drivers/block/xen-blkfront.ko]
    root_size: 32MiB
  - name: installer
    kernel: di:kernel
    initrd: di:initrd
guest_images_url: http://10.0.2.2:8080/images
guests:
  - {name: web, memory: 256MiB, image: debian, type: auto}
  - {name: inst, memory: 512MiB, image: installer, type: pv}
`

func TestGuestImagesValid(t *testing.T) {
	dir := t.TempDir()
	b, err := Load(writeProfile(t, dir, "t1.yaml", withImages), dir)
	if err != nil {
		t.Fatal(err)
	}
	img, ok := b.GuestImage("debian")
	if !ok || !img.BuildsRoot() || img.RootSize != 32<<20 {
		t.Errorf("debian image: %+v, %v", img, ok)
	}
	if c, r := img.KernelRef(); c != "kernel" || r != "bzimage" {
		t.Errorf("KernelRef = %s:%s", c, r)
	}
	inst, _ := b.GuestImage("installer")
	if c, r := inst.KernelRef(); inst.BuildsRoot() || c != "di" || r != "kernel" {
		t.Errorf("installer image: %+v (%s:%s)", inst, c, r)
	}
	if b.Guests[0].Image != "debian" || b.Guests[1].Type != GuestTypePV {
		t.Errorf("guests: %+v", b.Guests)
	}
}

func TestGuestImagesBad(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"unknown image", "image: debian, type: auto", "image: debain, type: auto", `guests[0].image: no guest image named "debain"`},
		{"kernel and image", "image: debian, type: auto", "image: debian, kernel: dom0", "guests[0].image: give kernel or image, not both"},
		{"bad type", "type: auto}", "type: hvm}", `guests[0].type: "hvm": want auto, pv or pvh`},
		{"dom0 pvh", "image: debian, type: auto", "kernel: dom0, type: pvh", "guests[0].type: the dom0 kernel boots only as a PV guest"},
		{"no kernel", "    kernel: kernel\n    busybox", "    busybox", "guest_images[0].kernel: required field is missing"},
		{"kernel role", "    kernel: di:kernel", "    kernel: di:vmlinuz", `guest_images[1].kernel: component "di" has no file with role "vmlinuz"`},
		{"busybox missing role", "    busybox: busybox\n", "    busybox: di\n", `guest_images[0].busybox: component "di" has no file with role "busybox"`},
		{"no busybox", "    busybox: busybox\n", "", "guest_images[0]: give busybox"},
		{"no root size", "    root_size: 32MiB\n", "", "guest_images[0].root_size: required field is missing"},
		{"small root", "root_size: 32MiB", "root_size: 1MiB", "guest_images[0].root_size: 1MiB: give whole MiB from 8MiB to 4GiB"},
		{"bad module", "modules: [lib/modules/", "modules: [../lib/modules/", "guest_images[0].modules[0]"},
		{"initrd with busybox", "    initrd: di:initrd\n", "    initrd: di:initrd\n    busybox: busybox\n", "guest_images[1].initrd: an image with a packaged initrd gets no root file system"},
		{"initrd not a role", "initrd: di:initrd", "initrd: di", `guest_images[1].initrd: "di": want component:role`},
		{"duplicate image", "  - name: installer\n", "  - name: debian\n", `guest_images[1].name: guest image "debian" is declared twice`},
		{"bad image name", "  - name: installer\n", "  - name: Installer\n", `guest_images[1].name: "Installer"`},
		{"bad url", "http://10.0.2.2:8080/images", "ftp://10.0.2.2/images", "guest_images_url: \"ftp://10.0.2.2/images\": want an http:// or https:// base URL"},
		{"cmdline quote", "    initrd: di:initrd\n", "    initrd: di:initrd\n    cmdline: a\"b\n", "guest_images[1].cmdline: quotes, backslashes and newlines"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(withImages, c.old) {
				t.Fatalf("test bug: %q not in the profile", c.old)
			}
			dir := t.TempDir()
			_, err := Load(writeProfile(t, dir, "t1.yaml", strings.Replace(withImages, c.old, c.new, 1)), dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "t1.yaml:") {
				t.Fatalf("error\n  %v\nwant it to contain t1.yaml:...: %s", err, c.want)
			}
		})
	}
}
