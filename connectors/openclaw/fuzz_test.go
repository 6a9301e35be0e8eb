package openclaw

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadFrame feeds arbitrary host output to the frame reader: it never
// panics, never returns a frame over the cap, and fails only with the
// documented errors.
func FuzzReadFrame(f *testing.F) {
	for _, s := range []string{
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n", "garbage\n{}\n", "\r\n\n\n", "no newline",
		"{\"jsonrpc\":\"2.0\",\"method\":\"ready\"}\r\n" + string(bytes.Repeat([]byte("x"), 300)) + "\n",
	} {
		f.Add([]byte(s), uint8(64))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint8) {
		limit := int(max) + 1
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for i := 0; i < 1000; i++ {
			frame, err := readFrame(br, limit)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(frame) > limit {
				t.Fatalf("frame of %d bytes over the %d cap", len(frame), limit)
			}
		}
	})
}
