package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
)

type memESP map[string][]byte

func (e memESP) read(name string) ([]byte, error) {
	b, ok := e[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

func (e memESP) write(name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err // nothing replaced, as the temp file + rename would do
	}
	e[name] = b
	return nil
}

// memVars is a variable store with the firmware's one boot-time rule that
// matters here: BootNext is consumed by the boot it starts.
type memVars map[string][]byte

func (v memVars) get(name string) ([]byte, error) {
	b, ok := v[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}
func (v memVars) set(name string, data []byte) error { v[name] = bytes.Clone(data); return nil }
func (v memVars) names() ([]string, error) {
	var out []string
	for n := range v {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (v memVars) reboot() {
	if next, ok := v["BootNext"]; ok {
		v["BootCurrent"] = next
		delete(v, "BootNext")
		return
	}
	v["BootCurrent"] = v["BootOrder"][:2]
}

type slotWorld struct {
	esp   memESP
	vars  memVars
	lines []string
	key   *rsa.PrivateKey
	cert  *x509.Certificate
}

func newSlotWorld(t testing.TB) *slotWorld {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "owner db"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4102444800, 0)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	slots, _ := contract.EncodeSlots(contract.Slots{Active: contract.SlotA, Slots: map[string]contract.SlotInfo{
		contract.SlotA: {State: contract.SlotConfirmed, Version: "1.0.0+aaaaaaaa"}, contract.SlotB: {State: contract.SlotEmpty}}})
	w := &slotWorld{
		esp:  memESP{contract.SlotsFile: slots, contract.SlotFile(contract.SlotA): []byte("payload 1.0.0"), contract.FallbackFile: []byte("payload 1.0.0")},
		vars: memVars{"Boot0000": []byte("the firmware's shell"), "BootOrder": u16bytes([]uint16{0})},
		key:  key, cert: cert,
	}
	return w
}

func (w *slotWorld) manager(version string) *slotManager {
	return &slotManager{esp: w.esp, vars: w.vars, board: "qemu-q35", version: version,
		geo: espGeometry{Number: 1, Start: 2048, Size: 300000, GUID: "0bd2a7e3-b4f0-5c2d-8f4a-6b1f6b4cf1aa"},
		say: func(s fmt.Stringer) { w.lines = append(w.lines, s.String()) }}
}

func (w *slotWorld) artefact(t testing.TB, board, version string, payload []byte) []byte {
	t.Helper()
	b, err := update.Encode(update.Header{Board: board, Version: version, Created: 1}, map[string][]byte{update.PartESP: payload}, w.key, w.cert)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *slotWorld) state(t *testing.T) contract.Slots {
	t.Helper()
	s, err := contract.ParseSlots(w.esp[contract.SlotsFile])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (w *slotWorld) said(t *testing.T, want string) {
	t.Helper()
	for _, l := range w.lines {
		if strings.Contains(l, want) {
			return
		}
	}
	t.Errorf("no line %q in:\n%s", want, strings.Join(w.lines, "\n"))
}

func TestSlotsUpdateConfirmed(t *testing.T) {
	w := newSlotWorld(t)
	booted, err := w.manager("1.0.0+aaaaaaaa").atBoot()
	if err != nil || booted != contract.SlotA {
		t.Fatalf("first boot: %q %v", booted, err)
	}
	w.said(t, "fwbuild-ctld: slot a confirmed version=1.0.0+aaaaaaaa")
	if got := u16s(w.vars["BootOrder"]); fmt.Sprint(got) != "[3840 3841 0]" {
		t.Fatalf("BootOrder %v, want both slots' options first, then the firmware's", got)
	}
	art := w.artefact(t, "qemu-q35", "1.1.0+bbbbbbbb", []byte("payload 1.1.0"))
	if slot, err := w.manager("1.0.0+aaaaaaaa").install(bytes.NewReader(art), int64(len(art)), w.cert, false); err != nil || slot != contract.SlotB {
		t.Fatalf("install: %q %v", slot, err)
	}
	if string(w.esp[contract.SlotFile(contract.SlotB)]) != "payload 1.1.0" || fmt.Sprint(u16s(w.vars["BootNext"])) != "[3841]" {
		t.Fatalf("slot b %q, BootNext %v", w.esp[contract.SlotFile(contract.SlotB)], w.vars["BootNext"])
	}
	w.said(t, "slot b pending version=1.1.0+bbbbbbbb")

	w.vars.reboot() // BootNext: slot b, once
	m := w.manager("1.1.0+bbbbbbbb")
	if booted, err = m.atBoot(); err != nil || booted != contract.SlotB {
		t.Fatalf("trial boot: %q %v", booted, err)
	}
	w.said(t, "slot b trying version=1.1.0+bbbbbbbb")
	if fmt.Sprint(u16s(w.vars["BootOrder"])[:2]) != "[3840 3841]" {
		t.Fatal("an unconfirmed slot went first in BootOrder")
	}
	if err := m.confirm(booted); err != nil {
		t.Fatal(err)
	}
	w.said(t, "slot b confirmed version=1.1.0+bbbbbbbb")
	if s := w.state(t); s.Active != contract.SlotB || fmt.Sprint(u16s(w.vars["BootOrder"])[:2]) != "[3841 3840]" || string(w.esp[contract.FallbackFile]) != "payload 1.1.0" {
		t.Fatalf("after confirm: %+v, BootOrder %v, fallback %q", s, u16s(w.vars["BootOrder"]), w.esp[contract.FallbackFile])
	}
	w.vars.reboot() // a second reboot stays on b
	if booted, _ := w.manager("1.1.0+bbbbbbbb").atBoot(); booted != contract.SlotB {
		t.Fatalf("second reboot on %s", booted)
	}
}

func TestSlotsUnconfirmedFallsBack(t *testing.T) {
	for _, how := range []string{"reset before confirmation", "control domain failed"} {
		w := newSlotWorld(t)
		w.manager("1.0.0+aaaaaaaa").atBoot()
		art := w.artefact(t, "qemu-q35", "1.1.0+bbbbbbbb", []byte("payload 1.1.0"))
		if _, err := w.manager("1.0.0+aaaaaaaa").install(bytes.NewReader(art), int64(len(art)), w.cert, false); err != nil {
			t.Fatal(err)
		}
		w.vars.reboot()
		m := w.manager("1.1.0+bbbbbbbb")
		booted, _ := m.atBoot()
		if how == "control domain failed" {
			if reboot, err := m.failing(booted, "xenstored"); err != nil || !reboot {
				t.Fatalf("failing: %v %v", reboot, err)
			}
			w.said(t, "slot b failed version=1.1.0+bbbbbbbb: control domain failed (xenstored)")
		}
		w.vars.reboot() // no BootNext: BootOrder's first, slot a
		if booted, err := w.manager("1.0.0+aaaaaaaa").atBoot(); err != nil || booted != contract.SlotA {
			t.Fatalf("%s: back on %q, %v", how, booted, err)
		}
		s := w.state(t)
		if s.Active != contract.SlotA || s.Slots[contract.SlotB].State != contract.SlotFailed || s.Slots[contract.SlotB].Note == "" {
			t.Errorf("%s: state %+v", how, s)
		}
		if how == "reset before confirmation" {
			w.said(t, "slot b failed version=1.1.0+bbbbbbbb: booted and did not confirm; back on slot a")
		}
		w.vars.reboot()
		if booted, _ := w.manager("1.0.0+aaaaaaaa").atBoot(); booted != contract.SlotA {
			t.Errorf("%s: the failed slot was tried again", how)
		}
	}
}

func TestSlotsRefuseBadArtefacts(t *testing.T) {
	w := newSlotWorld(t)
	w.manager("1.2.0+aaaaaaaa").atBoot()
	before := map[string]string{}
	for k, v := range w.esp {
		before[k] = string(v)
	}
	good := w.artefact(t, "qemu-q35", "1.3.0+cccccccc", []byte("payload 1.3.0"))
	other := newSlotWorld(t)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-2] ^= 1
	for _, c := range []struct {
		name string
		art  []byte
		cert *x509.Certificate
		want string
	}{
		{"wrong board", w.artefact(t, "qemu-q35-host", "1.3.0+cccccccc", []byte("x")), w.cert, `for board "qemu-q35-host", this is "qemu-q35"`},
		{"bad signature", good, other.cert, "does not verify"},
		{"truncated upload", good[:len(good)-5], w.cert, "truncated"},
		{"damaged payload", flipped, w.cert, "signed header pins"},
		{"downgrade", w.artefact(t, "qemu-q35", "1.1.9+dddddddd", []byte("old")), w.cert, "older than the running 1.2.0"},
		{"unsigned build", good, nil, "no owner certificate"},
	} {
		_, err := w.manager("1.2.0+aaaaaaaa").install(bytes.NewReader(c.art), int64(len(c.art)), c.cert, false)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
		for k, v := range w.esp {
			if before[k] != string(v) {
				t.Errorf("%s: %s changed", c.name, k)
			}
		}
		if _, ok := w.vars["BootNext"]; ok {
			t.Errorf("%s: BootNext set", c.name)
		}
	}
	if _, err := w.manager("1.2.0+aaaaaaaa").install(bytes.NewReader(w.artefact(t, "qemu-q35", "1.1.9+dddddddd", []byte("old"))), 0, w.cert, true); err == nil {
		t.Error("a zero-size upload was taken")
	}
}
