package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// fakeXenbus records what guestinit writes and replies with canned bytes.
type fakeXenbus struct {
	wrote  bytes.Buffer
	writes int
	reply  io.Reader
}

func (f *fakeXenbus) Write(p []byte) (int, error) { f.writes++; return f.wrote.Write(p) }
func (f *fakeXenbus) Read(p []byte) (int, error)  { return f.reply.Read(p) }

func msg(typ, req, tx uint32, payload string) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint32(b[4:], req)
	binary.LittleEndian.PutUint32(b[8:], tx)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(payload)))
	return append(b, payload...)
}

// byteReader returns one byte a read, as a device may return short reads.
type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestXSReadKey(t *testing.T) {
	x := &fakeXenbus{reply: &byteReader{msg(2, 1, 0, "7")}}
	v, err := xsReadKey(x, "domid")
	if err != nil {
		t.Fatal(err)
	}
	if v != "7" {
		t.Errorf("value %q, want 7", v)
	}
	want := []byte{2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 'd', 'o', 'm', 'i', 'd', 0}
	if !bytes.Equal(x.wrote.Bytes(), want) || x.writes != 1 {
		t.Errorf("wrote %v in %d writes, want %v in one", x.wrote.Bytes(), x.writes, want)
	}
}

func TestXSReadKeyErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		reply []byte
		want  string
	}{
		"error reply": {msg(16, 1, 0, "ENOENT\x00"), "xenstore: read domid: ENOENT"},
		"wrong type":  {msg(4, 1, 0, "x"), "reply of type 4, want 2"},
		"wrong id":    {msg(2, 9, 0, "7"), "reply to request 9, want 1"},
		"empty":       {msg(2, 1, 0, ""), "empty value"},
		"short":       {msg(2, 1, 0, "12345")[:18], "read 5-byte payload: unexpected EOF"},
		"no header":   {[]byte{2, 0, 0}, "read header: unexpected EOF"},
		"huge":        {msg(2, 1, 0, strings.Repeat("x", 4097)), "more than 4096"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := xsReadKey(&fakeXenbus{reply: bytes.NewReader(tc.reply)}, "domid")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestEncodeXSLimit(t *testing.T) {
	if _, err := encodeXS(xsRead, 1, make([]byte, 4097)); err == nil {
		t.Error("oversized payload accepted")
	}
}

func FuzzDecodeXS(f *testing.F) {
	f.Add(msg(2, 1, 0, "7"))
	f.Add(msg(16, 1, 0, "EINVAL\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := decodeXS(bytes.NewReader(b))
		if err != nil {
			return
		}
		if int(h.Len) != len(p) || len(b) < 16+len(p) {
			t.Errorf("header %+v, payload %d bytes, input %d", h, len(p), len(b))
		}
		re, err := encodeXS(h.Type, h.ReqID, p)
		if err != nil {
			t.Fatal(err)
		}
		if h.TxID == 0 && !bytes.Equal(re, b[:16+len(p)]) {
			t.Errorf("re-encoded %x, input %x", re, b[:16+len(p)])
		}
	})
}

func TestParseDomid(t *testing.T) {
	if _, err := parseDomid(""); err == nil {
		t.Error("empty domid accepted")
	}
	if _, err := parseDomid("1a"); err == nil {
		t.Error("domid 1a accepted")
	}
	if id, err := parseDomid("42"); err != nil || id != 42 {
		t.Errorf("parseDomid(42) = %d, %v", id, err)
	}
}
