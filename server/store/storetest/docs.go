package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/canaryd/canaryd/server/store"
)

// testDocs: store.Docs puts, replaces, lists in key order, deletes, keeps
// kinds apart, and persists.
func (s *suite) testDocs(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	d, ok := st.(store.Docs)
	if !ok {
		t.Fatalf("%T does not implement store.Docs", st)
	}
	if docs, err := d.ListDocs(ctx, "alarm"); err != nil || len(docs) != 0 {
		t.Fatalf("ListDocs(empty) = %v, %v", docs, err)
	}
	if _, err := d.GetDoc(ctx, "alarm", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetDoc(absent) = %v, want ErrNotFound", err)
	}
	for _, p := range []struct{ kind, key, val string }{
		{"alarm", "b", "1"}, {"alarm", "a", "2"}, {"alarm", "b", "3"}, {"policy", "a", "p"}, {"alarm", "c\x00}:x", "\x00bin"},
	} {
		if err := d.PutDoc(ctx, p.kind, p.key, []byte(p.val)); err != nil {
			t.Fatalf("PutDoc(%q, %q): %v", p.kind, p.key, err)
		}
	}
	want := []store.Doc{{Key: "a", Value: []byte("2")}, {Key: "b", Value: []byte("3")}, {Key: "c\x00}:x", Value: []byte("\x00bin")}}
	check := func(st store.Store, want []store.Doc) {
		t.Helper()
		docs, err := st.(store.Docs).ListDocs(ctx, "alarm")
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != len(want) {
			t.Fatalf("ListDocs = %q, want %q", docs, want)
		}
		for i := range docs {
			if docs[i].Key != want[i].Key || !bytes.Equal(docs[i].Value, want[i].Value) {
				t.Fatalf("ListDocs = %q, want %q", docs, want)
			}
		}
	}
	check(st, want)
	if v, err := d.GetDoc(ctx, "policy", "a"); err != nil || string(v) != "p" {
		t.Fatalf("GetDoc(policy a) = %q, %v", v, err)
	}
	if err := d.DeleteDocs(ctx, "alarm", "a", "absent"); err != nil {
		t.Fatal(err)
	}
	check(st, want[1:])
	if s.reopen != nil {
		st = s.reopen(t, st)
		check(st, want[1:])
	}
}
