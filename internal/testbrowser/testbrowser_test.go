package testbrowser_test

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/canaryd/canaryd/internal/testbrowser"
)

// TestProblemsAreReported: what the report tests check for is seen — a
// console error, an uncaught exception, a request that fails — and an
// offline page reaches nothing.
func TestProblemsAreReported(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/":
			fmt.Fprint(w, `<!DOCTYPE html><title>t</title><p id="x">hello</p><p>two</p>
<img src="/missing.png">
<script>console.error("boom"); setTimeout(() => { throw new Error("uncaught") }, 0)</script>`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	b := testbrowser.Start(t)

	p := b.Open(t, srv.URL+"/", testbrowser.Viewport{Width: 800, Height: 600})
	p.WaitFor(t, `document.readyState === "complete"`, testbrowser.Timeout)
	if n := testbrowser.Eval[int](t, p, `document.querySelectorAll("p").length`); n != 2 {
		t.Errorf("%d paragraphs, want 2", n)
	}
	if s := testbrowser.Eval[string](t, p, `document.getElementById("x").textContent`); s != "hello" {
		t.Errorf("text %q", s)
	}
	p.WaitFor(t, `new Promise(r => setTimeout(() => r(true), 200))`, testbrowser.Timeout)
	probs := strings.Join(p.Problems(), "\n")
	for _, want := range []string{"console.error: \"boom\"", "uncaught", "404"} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems %q lack %q", probs, want)
		}
	}

	// Offline: a file that asks for the server's image gets nothing.
	dir := t.TempDir()
	page := filepath.Join(dir, "offline.html")
	html := fmt.Sprintf(`<!DOCTYPE html><title>o</title><img src="%s/img.png">`, srv.URL)
	if err := os.WriteFile(page, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	before := hits.Load()
	o := b.Open(t, "file://"+page, testbrowser.Viewport{Width: 800, Height: 600, Offline: true})
	o.WaitFor(t, `document.readyState === "complete"`, testbrowser.Timeout)
	if failed := o.FailedRequests(); len(failed) != 1 || !strings.Contains(failed[0], srv.URL+"/img.png") || !strings.Contains(failed[0], "INTERNET_DISCONNECTED") {
		t.Errorf("failed requests %q, want the image, disconnected", failed)
	}
	if hits.Load() != before {
		t.Error("the offline page reached the server")
	}

	if img, err := png.Decode(bytes.NewReader(p.ElementScreenshot(t, "#x"))); err != nil || img.Bounds().Dy() > 60 {
		t.Errorf("element screenshot: %v", err)
	}
	// Screenshots are PNGs of the viewport, or of the whole page.
	for _, full := range []bool{false, true} {
		img, err := png.Decode(bytes.NewReader(p.Screenshot(t, full)))
		if err != nil {
			t.Fatal(err)
		}
		if w := img.Bounds().Dx(); w != 800 {
			t.Errorf("screenshot %d px wide, want 800", w)
		}
	}
}
