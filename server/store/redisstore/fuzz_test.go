package redisstore

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The fuzz targets of what the Redis store reads back and parses: a
// corrupt or hostile value (another program writing under the prefix, a
// truncated write) must be an error, never a panic. Run one with
//
//	go test -run '^$' -fuzz '^FuzzParseRequestValue$' -fuzztime 10s ./server/store/redisstore/

// FuzzParseRequestValue parses arbitrary request-id records. A length
// prefix near 2⁶⁴ wrapped the bounds check around and panicked.
func FuzzParseRequestValue(f *testing.F) {
	created := time.Date(2026, 11, 22, 10, 0, 0, 123, time.UTC)
	f.Add(requestValue("run-1", created, []byte("fingerprint")))
	f.Add(requestValue("", time.Unix(0, 0), nil))
	f.Add("\xf4\xff\xff\xff\xff\xff\xff\xff\xff\x01abcdefghijkl")
	f.Fuzz(func(t *testing.T, v string) {
		id, at, fp, err := parseRequestValue(v)
		if err != nil {
			return
		}
		// What parses is what requestValue wrote.
		if got := requestValue(id, at, fp); got != v {
			if _, _, _, err := parseRequestValue(got); err != nil {
				t.Fatalf("re-encoded record does not parse: %v", err)
			}
		}
	})
}

// FuzzDecodeToken decodes arbitrary page tokens of every kind: an error
// (ErrBadPageToken) or a key of the listing, never a panic.
func FuzzDecodeToken(f *testing.F) {
	f.Add(encodeToken(kindRuns, "svc\x00stage", []byte("0123456789abcdef")), "svc\x00stage")
	f.Add(encodeToken(kindConfigVersions, "checkout", []byte{0, 0, 0, 7}), "checkout")
	f.Add("AXIA", "")
	f.Fuzz(func(t *testing.T, tok, listing string) {
		for _, kind := range []byte{kindVerdicts, kindRuns, kindConfigs, kindConfigVersions} {
			key, err := decodeToken(tok, kind, listing, 4)
			if err != nil || tok == "" {
				continue
			}
			if len(key) < 4 {
				t.Fatalf("key %q shorter than the minimum", key)
			}
			if again := encodeToken(kind, listing, key); again != tok {
				if k2, err := decodeToken(again, kind, listing, 4); err != nil || !bytes.Equal(k2, key) {
					t.Fatalf("re-encoded token: %q, %v", k2, err)
				}
			}
		}
	})
}

// FuzzAssembleRun decodes arbitrary stored run records (the run, its
// update and its final state): an error or a run, never a panic.
func FuzzAssembleRun(f *testing.F) {
	run, err := proto.Marshal(&canaryv1.Run{Id: "r1", Service: "checkout", State: canaryv1.RunState_RUN_STATE_RUNNING,
		CreateTime: timestamppb.New(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))})
	if err != nil {
		f.Fatal(err)
	}
	upd, err := proto.Marshal(&canaryv1.Run{Counters: &canaryv1.RunCounters{Batches: 3}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(run, upd, []byte{}, byte(3))
	f.Add(run, []byte{}, []byte{0x0a}, byte(5))
	f.Fuzz(func(t *testing.T, run, upd, fin []byte, present byte) {
		vals := make([]any, 3)
		for i, b := range [][]byte{run, upd, fin} {
			if present&(1<<i) != 0 {
				vals[i] = string(b)
			}
		}
		if r, err := assembleRun("r1", vals); err == nil && r == nil {
			t.Fatal("no run and no error")
		}
	})
}
