package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// XenStore wire protocol (xen/include/public/io/xs_wire.h): a 16-byte header
// of four little-endian uint32s, then len bytes of payload.
const (
	xsRead  = 2
	xsError = 16
	// xsPayloadMax is XENSTORE_PAYLOAD_MAX.
	xsPayloadMax = 4096
	xsHeaderLen  = 16
)

type xsHeader struct {
	Type, ReqID, TxID, Len uint32
}

// encodeXS builds one request message.
func encodeXS(typ, reqID uint32, payload []byte) ([]byte, error) {
	if len(payload) > xsPayloadMax {
		return nil, fmt.Errorf("xenstore: payload of %d bytes exceeds %d", len(payload), xsPayloadMax)
	}
	b := make([]byte, xsHeaderLen, xsHeaderLen+len(payload))
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint32(b[4:], reqID)
	binary.LittleEndian.PutUint32(b[8:], 0) // no transaction
	binary.LittleEndian.PutUint32(b[12:], uint32(len(payload)))
	return append(b, payload...), nil
}

// decodeXS reads one message.
func decodeXS(r io.Reader) (xsHeader, []byte, error) {
	var raw [xsHeaderLen]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return xsHeader{}, nil, fmt.Errorf("xenstore: read header: %w", err)
	}
	h := xsHeader{
		Type:  binary.LittleEndian.Uint32(raw[0:]),
		ReqID: binary.LittleEndian.Uint32(raw[4:]),
		TxID:  binary.LittleEndian.Uint32(raw[8:]),
		Len:   binary.LittleEndian.Uint32(raw[12:]),
	}
	if h.Len > xsPayloadMax {
		return h, nil, fmt.Errorf("xenstore: reply claims %d bytes of payload, more than %d", h.Len, xsPayloadMax)
	}
	p := make([]byte, h.Len)
	if _, err := io.ReadFull(r, p); err != nil {
		return h, nil, fmt.Errorf("xenstore: read %d-byte payload: %w", h.Len, err)
	}
	return h, p, nil
}

// xsReadKey reads one xenstore key; a relative path is relative to the
// domain's home, /local/domain/<domid>.
func xsReadKey(rw io.ReadWriter, path string) (string, error) {
	const reqID = 1
	msg, err := encodeXS(xsRead, reqID, append([]byte(path), 0))
	if err != nil {
		return "", err
	}
	// The xenbus device takes a request in one write.
	if _, err := rw.Write(msg); err != nil {
		return "", fmt.Errorf("xenstore: write read %s: %w", path, err)
	}
	h, p, err := decodeXS(rw)
	if err != nil {
		return "", err
	}
	switch {
	case h.Type == xsError:
		return "", fmt.Errorf("xenstore: read %s: %s", path, bytes.TrimRight(p, "\x00"))
	case h.Type != xsRead:
		return "", fmt.Errorf("xenstore: read %s: reply of type %d, want %d", path, h.Type, xsRead)
	case h.ReqID != reqID:
		return "", fmt.Errorf("xenstore: read %s: reply to request %d, want %d", path, h.ReqID, reqID)
	}
	v := string(bytes.TrimRight(p, "\x00"))
	if v == "" {
		return "", errors.New("xenstore: read " + path + ": empty value")
	}
	return v, nil
}

// parseDomid reads xenstore's "domid": a decimal number, nothing else.
func parseDomid(s string) (int, error) {
	id, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("xenstore: domid is %q, not a number", s)
	}
	return int(id), nil
}
