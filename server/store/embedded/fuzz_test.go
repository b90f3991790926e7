package embedded

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The fuzz targets of what the embedded store reads back and parses: a
// corrupt value or a hostile page token must be an error, never a panic.
// Run one with
//
//	go test -run '^$' -fuzz '^FuzzParseRequest$' -fuzztime 10s ./server/store/embedded/

// FuzzParseRequest parses arbitrary request-id records.
func FuzzParseRequest(f *testing.F) {
	rec := binary.AppendUvarint(nil, 5)
	f.Add(append(append(rec, "run-1"...), "fingerprint"...))
	f.Add([]byte{})
	f.Add([]byte("\xf4\xff\xff\xff\xff\xff\xff\xff\xff\x01abc"))
	f.Fuzz(func(t *testing.T, v []byte) {
		id, fp, ok := parseRequest(v)
		if !ok {
			return
		}
		again := append(binary.AppendUvarint(nil, uint64(len(id))), id...)
		if !bytes.Equal(append(again, fp...), v) {
			// A longer uvarint of the same length parses the same way.
			if id2, fp2, ok := parseRequest(append(again, fp...)); !ok || !bytes.Equal(id2, id) || !bytes.Equal(fp2, fp) {
				t.Fatalf("re-encoded record parses as %q %q %v", id2, fp2, ok)
			}
		}
	})
}

// FuzzDecodeToken decodes arbitrary page tokens of every kind: an error
// or a key with the listing's prefix, never a panic.
func FuzzDecodeToken(f *testing.F) {
	f.Add(encodeToken(kindRuns, 3, []byte("svc\x00stage\x000123456789ab")), 3, []byte("svc"))
	f.Add(encodeToken(kindConfigVersions, 0, []byte("checkout\x00\x00\x00\x00\x07")), 0, []byte("checkout\x00"))
	f.Add("AXIA", 0, []byte{})
	f.Fuzz(func(t *testing.T, tok string, mask int, prefix []byte) {
		for _, kind := range []byte{kindVerdicts, kindRuns, kindConfigs, kindConfigVersions} {
			key, err := decodeToken(tok, kind, mask, prefix, len(prefix)+1)
			if err != nil || tok == "" {
				continue
			}
			if !bytes.HasPrefix(key, prefix) || len(key) <= len(prefix) {
				t.Fatalf("key %q outside the listing %q", key, prefix)
			}
		}
	})
}
