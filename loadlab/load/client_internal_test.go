package load

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadAppendReusesTheBuffer(t *testing.T) {
	want := strings.Repeat("0123456789", 1000)
	buf := make([]byte, 0, 8)
	buf, err := readAppend(buf[:0], iotest.HalfReader(strings.NewReader(want)))
	if err != nil || string(buf) != want {
		t.Fatalf("read %d bytes, err %v", len(buf), err)
	}
	grown := cap(buf)
	buf, err = readAppend(buf[:0], strings.NewReader("short"))
	if err != nil || string(buf) != "short" || cap(buf) != grown {
		t.Fatalf("second read %q (cap %d, was %d), err %v", buf, cap(buf), grown, err)
	}
	if _, err := readAppend(nil, iotest.ErrReader(bytes.ErrTooLarge)); err != bytes.ErrTooLarge {
		t.Fatalf("err = %v, want the reader's error", err)
	}
}
