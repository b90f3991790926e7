// Package testbrowser gives tests a real headless Chromium (Debian's
// chromium package), driven over the DevTools protocol with chromedp: load
// a URL or a file, collect console errors, uncaught exceptions and failed
// requests, evaluate JavaScript, and take PNG screenshots.
//
//	b := testbrowser.Start(t)
//	p := b.Open(t, srv.URL+"/runs/abc", testbrowser.Viewport{Width: 1280, Height: 900})
//	if errs := p.Problems(); len(errs) > 0 { t.Errorf("%q", errs) }
//	n := testbrowser.Eval[int](t, p, `document.querySelectorAll("svg.chart").length`)
//
// When chromium is not installed, Start skips the test with a message on
// stderr, or fails it when the environment has CI=true, so that CI cannot
// pass without running the browser tests.
package testbrowser

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/canaryd/canaryd/internal/testproc"
)

// Timeout bounds each step of a page (load, evaluate, screenshot).
const Timeout = 30 * time.Second

// Browser is a headless Chromium for one test, stopped when the test ends.
type Browser struct {
	ctx context.Context // a chromedp context whose first tab started the browser
}

// Start starts headless Chromium with a fresh profile in a temporary
// directory, and the flags this machine needs: no sandbox (tests run as
// root), no GPU, and none of the background connections (component
// updates, sync, QUIC probes) that a closed network refuses.
func Start(t testing.TB) *Browser {
	t.Helper()
	bin := testproc.LookPath(t, "chromium", "chromium", "the HTML pages in a real browser")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser; it must not run under a
	// timeout (that would bound the browser's life), so a watchdog bounds
	// the start instead.
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx, chromedp.Navigate("about:blank")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("testbrowser: start %s: %v", bin, err)
		}
	case <-time.After(2 * Timeout):
		cancel()
		t.Fatalf("testbrowser: %s did not start within %v", bin, 2*Timeout)
	}
	return &Browser{ctx: ctx}
}

// Viewport is the size of a page's window in CSS pixels.
type Viewport struct {
	Width, Height int64
	// Mobile emulates a phone: the page's viewport meta tag applies, and
	// touch is on.
	Mobile bool
	// Offline cuts the page from the network: every request but the page
	// itself (a file) fails, and is reported by FailedRequests.
	Offline bool
	// Headers are sent with every request of the page (e.g.
	// Authorization).
	Headers map[string]string
}

// Page is one tab of the browser.
type Page struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string                     // console errors, exceptions, error log entries
	failed   []string                     // failed requests
	urls     map[network.RequestID]string // the URL of each request, for failed
}

// Open opens url (http://, or file:// for a file) in a new tab with the
// viewport, waits until it is loaded, and returns the page. The tab closes
// when the test ends.
func (b *Browser) Open(t testing.TB, url string, vp Viewport) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	p := &Page{ctx: ctx, urls: map[network.RequestID]string{}}
	if err := chromedp.Listen(ctx, p.event); err != nil {
		t.Fatalf("testbrowser: listen: %v", err)
	}
	steps := []chromedp.Action[chromedp.Void]{}
	vopts := []chromedp.EmulateViewportOption{}
	if vp.Mobile {
		vopts = append(vopts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	steps = append(steps, chromedp.EmulateViewport(vp.Width, vp.Height, vopts...))
	if vp.Offline {
		steps = append(steps, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
				MatchedNetworkConditions: []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}},
			})
			if err != nil {
				return err
			}
			_, err = cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
			return err
		}))
	}
	if len(vp.Headers) > 0 {
		h := network.Headers{}
		for k, v := range vp.Headers {
			h[k] = v
		}
		steps = append(steps, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h})
			return err
		}))
	}
	steps = append(steps, chromedp.Navigate(url))
	sctx, scancel := context.WithTimeout(ctx, Timeout)
	defer scancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("testbrowser: open %s: %v", url, err)
	}
	return p
}

// event records the problems a page reports. It runs on chromedp's reader
// goroutine: it only appends under the lock.
func (p *Page) event(ev any) {
	var problem, failed string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range e.Args {
				if a.Value != nil {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			problem = "console." + string(e.Type) + ": " + strings.Join(args, " ")
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		problem = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg)
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.EntryLevelError {
			problem = fmt.Sprintf("log (%s): %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	case *network.EventRequestWillBeSent:
		if e.Request != nil {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.urls[e.RequestID] = e.Request.URL
		}
		return
	case *network.EventLoadingFailed:
		p.mu.Lock()
		u := p.urls[e.RequestID]
		p.mu.Unlock()
		failed = fmt.Sprintf("%s %s: %s", e.Type, u, e.ErrorText)
		if e.BlockedReason != "" {
			failed += " (blocked: " + string(e.BlockedReason) + ")"
		}
	}
	if problem == "" && failed == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if problem != "" {
		p.problems = append(p.problems, problem)
	}
	if failed != "" {
		p.failed = append(p.failed, failed)
	}
}

// Problems returns the console errors, uncaught exceptions and error log
// entries (a resource that failed to load, a blocked script) seen so far.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// Requests returns the URLs of the page's requests so far, the page's
// own included, in no particular order.
func (p *Page) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.urls))
	for _, u := range p.urls {
		out = append(out, u)
	}
	return out
}

// FailedRequests returns the requests of the page that failed so far.
func (p *Page) FailedRequests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.failed...)
}

// Eval evaluates a JavaScript expression in the page and returns its value
// decoded as T (awaiting it when it is a promise); it ends the test on an
// error or an exception.
func Eval[T any](t testing.TB, p *Page, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("testbrowser: eval %s: %v", js, err)
	}
	return v
}

// WaitFor evaluates a JavaScript condition until it is true, or ends the
// test after d. Errors while the page navigates (its context destroyed)
// count as false.
func (p *Page) WaitFor(t testing.TB, js string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for {
		ctx, cancel := context.WithTimeout(p.ctx, Timeout)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+js+")"))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("testbrowser: %s still not true after %v (last error: %v)", js, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Screenshot returns a PNG of the viewport, or with full of the whole
// page.
func (p *Page) Screenshot(t testing.TB, full bool) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	var (
		png []byte
		err error
	)
	if full {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	} else {
		png, err = chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
			r, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng})
			if err != nil {
				return nil, err
			}
			return r.Data, nil
		})
	}
	if err != nil {
		t.Fatalf("testbrowser: screenshot: %v", err)
	}
	return png
}

// ElementScreenshot returns a PNG of the first element that matches a CSS
// selector.
func (p *Page) ElementScreenshot(t testing.TB, selector string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(selector)))
	if err != nil {
		t.Fatalf("testbrowser: screenshot of %s: %v", selector, err)
	}
	return png
}

// SaveScreenshot writes a screenshot (see Screenshot) to path.
func (p *Page) SaveScreenshot(t testing.TB, path string, full bool) {
	t.Helper()
	if err := os.WriteFile(path, p.Screenshot(t, full), 0o644); err != nil {
		t.Fatalf("testbrowser: %v", err)
	}
}
