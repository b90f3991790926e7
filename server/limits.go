package server

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// Limits. Every request is bounded where it is validated: a request beyond
// a limit is rejected with INVALID_ARGUMENT naming the field, before
// anything is stored. README.md ("Limits") lists them all, with the
// limits of the config (analysis.MaxMetrics, analysis.MaxUnitLen) and the
// Options an operator may change (flags of canaryd).
const (
	// maxIDLen bounds request ids, batch ids, run ids, services and
	// stages.
	maxIDLen = 256
	// maxLabels bounds the labels of one cohort of a run
	// (CreateRunRequest.baseline_labels, canary_labels).
	maxLabels = 64
	// maxLabelKeyLen bounds a label key, as Kubernetes bounds the name of
	// a label.
	maxLabelKeyLen = 63
	// maxLabelValueLen bounds a label value.
	maxLabelValueLen = 256
	// maxLabelBytes bounds the keys and values of both label sets of a run
	// together: a run record is copied into every listing of it.
	maxLabelBytes = 16 << 10
	// maxReasonLen bounds the reason of CompleteRun and AbortRun.
	maxReasonLen = 4096
	// maxYAMLLen bounds a config sent as YAML text (PutConfigRequest.yaml,
	// CreateRunRequest.inline_yaml).
	maxYAMLLen = 256 << 10
	// maxPageTokenLen bounds a page token sent back.
	maxPageTokenLen = 1024
	// maxListBytes bounds the encoded size of the items of one page of
	// ListRuns, ListVerdicts and ListConfigs: a page is cut short (with a
	// next page token) before it grows past it, whatever its page size,
	// so that no listing approaches gRPC's default 4 MiB receive limit of
	// clients, nor makes the server build a huge response.
	maxListBytes = 2 << 20
)

// Page sizes of ListRuns, ListVerdicts and ListConfigs: page_size 0 means
// DefaultPageSize, more than MaxPageSize is capped (the store applies
// them); maxListBytes may cut a page shorter.
const (
	DefaultPageSize = store.DefaultPageSize
	MaxPageSize     = store.MaxPageSize
)

// Connection limits of the gRPC server (see Service.ServerOptions).
const (
	// DefaultMaxConcurrentStreams bounds the calls in progress on one
	// client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a client
	// queues the calls beyond it until one ends.
	DefaultMaxConcurrentStreams = 256
	// DefaultStreamIdleTimeout ends an IngestStream on which the client
	// sent no complete message for this long (see Options).
	DefaultStreamIdleTimeout = 2 * time.Minute
	// DefaultKeepaliveMinTime is the shortest interval between client
	// pings the server accepts, with or without calls in progress; a
	// client that pings more often is sent GOAWAY (ENHANCE_YOUR_CALM) and
	// disconnected after three such pings. grpc-go clients cannot ping
	// more often than every 10s.
	DefaultKeepaliveMinTime = 5 * time.Second
	// keepaliveTime and keepaliveTimeout: after keepaliveTime without
	// activity on a connection the server pings the client and closes the
	// connection if no answer comes within keepaliveTimeout, so that the
	// calls of vanished clients (watchers, streams) end.
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
	// maxConnectionIdle closes (GOAWAY) a connection without calls for
	// this long; clients reconnect transparently.
	maxConnectionIdle = 15 * time.Minute
	// connectionTimeout bounds the handshake of a new connection (TLS and
	// the HTTP/2 preface).
	connectionTimeout = 20 * time.Second
	// maxHeaderListSize bounds the metadata (headers) of one call.
	maxHeaderListSize = 64 << 10
)

// checkLabels validates the label sets of a run: their number, the length
// and encoding of their keys and values, and their total size.
func checkLabels(baseline, canary map[string]string) []*errdetails.BadRequest_FieldViolation {
	var vs []*errdetails.BadRequest_FieldViolation
	total := 0
	for _, set := range []struct {
		field  string
		labels map[string]string
	}{{"baseline_labels", baseline}, {"canary_labels", canary}} {
		if n := len(set.labels); n > maxLabels {
			// Do not look further: one violation, not one per label.
			vs = append(vs, violation(set.field, "has %d labels, more than %d", n, maxLabels))
			continue
		}
		for k, v := range set.labels {
			total += len(k) + len(v)
			switch {
			case k == "":
				vs = append(vs, violation(set.field, "a label key is empty"))
			case len(k) > maxLabelKeyLen:
				vs = append(vs, violation(set.field, "label key %s is %d bytes, more than %d", quoteShort(k), len(k), maxLabelKeyLen))
			case !utf8.ValidString(k):
				vs = append(vs, violation(set.field, "label key %s must be valid UTF-8", quoteShort(k)))
			case len(v) > maxLabelValueLen:
				vs = append(vs, violation(fmt.Sprintf("%s[%q]", set.field, k), "is %d bytes, more than %d", len(v), maxLabelValueLen))
			case !utf8.ValidString(v):
				vs = append(vs, violation(fmt.Sprintf("%s[%q]", set.field, k), "must be valid UTF-8"))
			}
		}
		if total > maxLabelBytes && len(vs) == 0 {
			vs = append(vs, violation(set.field, "labels of the run total %d bytes (keys and values of both cohorts), more than %d", total, maxLabelBytes))
		}
	}
	return vs
}

// quoteShort quotes s for a message, cut to its first 64 bytes.
func quoteShort(s string) string {
	const n = 64
	if len(s) <= n {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…", s[:n])
}

// checkPage validates the paging fields of a List request.
func checkPage(size int32, token string) []*errdetails.BadRequest_FieldViolation {
	var vs []*errdetails.BadRequest_FieldViolation
	if size < 0 {
		vs = append(vs, violation("page_size", "must be >= 0"))
	}
	if len(token) > maxPageTokenLen {
		vs = append(vs, violation("page_token", "is %d bytes, more than %d: not a token this server issued", len(token), maxPageTokenLen))
	}
	return vs
}

// checkFilter validates an optional filter string of a List request.
func checkFilter(field, v string) []*errdetails.BadRequest_FieldViolation {
	if len(v) > maxIDLen {
		return []*errdetails.BadRequest_FieldViolation{violation(field, "is %d bytes, more than %d", len(v), maxIDLen)}
	}
	return nil
}

// boundedPage returns a page of a listing whose items encode to at most
// maxBytes (but at least one item): fetch(size) returns the first size
// items after the request's token and the token that follows them. When
// the page fetched is too large, the longest prefix that fits is fetched
// again, so that the next page token follows the last item returned.
// refresh, if set, replaces items with fresher versions of themselves
// (ListRuns: the in-memory counters of running runs); it is called on
// pages that fit as fetched, and the page is checked again after it.
func boundedPage[T proto.Message](maxBytes, size int, fetch func(size int) ([]T, string, error), refresh func([]T) error) ([]T, string, error) {
	for {
		items, next, err := fetch(size)
		if err != nil {
			return nil, "", err
		}
		if k := fitBytes(items, maxBytes); k < len(items) {
			size = k
			continue
		}
		if refresh == nil {
			return items, next, nil
		}
		if err := refresh(items); err != nil {
			return nil, "", err
		}
		if k := fitBytes(items, maxBytes); k < len(items) {
			size = k
			continue
		}
		return items, next, nil
	}
}

// fitBytes returns how many of the first items encode to at most maxBytes
// as the elements of a repeated field; at least one.
func fitBytes[T proto.Message](items []T, maxBytes int) int {
	n := 0
	for i, it := range items {
		n += listItemSize(it)
		if n > maxBytes {
			return max(i, 1)
		}
	}
	return len(items)
}

// listItemSize is the size of an item as an element of a repeated message
// field: its encoding plus the tag and the length prefix.
func listItemSize(m proto.Message) int {
	n := proto.Size(m)
	return n + 1 + varintLen(n)
}

func varintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// Requests trickled byte by byte. The server reads the request message of
// a unary or server-streaming call before the handler runs, so no handler
// can bound that read: tapRequest (a grpc.InTapHandle) starts a timer with
// each call that cancels it unless its first message is complete within
// StreamIdleTimeout, and the interceptors below stop the timer once it is.
// IngestStream has an idle timeout of its own (see IngestStream).

// requestTimerKey is the context key of the timer of tapRequest.
type requestTimerKey struct{}

func (s *Service) tapRequest(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName == canaryv1.CanaryService_IngestStream_FullMethodName {
		return ctx, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(s.streamIdle, cancel)
	return context.WithValue(ctx, requestTimerKey{}, t), nil
}

// requestReceived stops the timer of tapRequest, and reports false if it
// had fired: the call is cancelled.
func requestReceived(ctx context.Context) bool {
	t, ok := ctx.Value(requestTimerKey{}).(*time.Timer)
	return !ok || t.Stop()
}

// unaryReceived is the interceptor of tapRequest for unary calls, which
// it reaches once their request is decoded.
func (s *Service) unaryReceived(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !requestReceived(ctx) {
		return nil, status.Errorf(codes.DeadlineExceeded, "request not received within %v (--stream-idle-timeout)", s.streamIdle)
	}
	return handler(ctx, req)
}

// streamReceived is the interceptor of tapRequest for streaming calls: it
// stops the timer after the first message is received.
func (s *Service) streamReceived(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, ok := ss.Context().Value(requestTimerKey{}).(*time.Timer); !ok {
		return handler(srv, ss)
	}
	return handler(srv, &receivedStream{ServerStream: ss})
}

// receivedStream stops the timer of tapRequest after its first message.
type receivedStream struct {
	grpc.ServerStream
	received bool
}

func (r *receivedStream) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if !r.received {
		r.received = true
		requestReceived(r.Context())
	}
	return err
}
