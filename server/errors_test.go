package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/server/store"
)

// TestErrorInterceptor: whatever a handler returns, wrapped or not, the
// client gets the status of errors.go: diagnosed errors keep their code and
// field violations, store sentinels and context errors map to their codes
// however deeply they are wrapped, statuses pass unchanged, and anything
// else is INTERNAL "internal error". A store that is unavailable also
// signals StoreUnavailable.
func TestErrorInterceptor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	wrap := func(err error) error { return fmt.Errorf("load run x: %w", fmt.Errorf("read: %w", err)) }
	for _, tt := range []struct {
		name  string
		err   error
		code  codes.Code
		field string
		msg   string
	}{
		{"nil", nil, codes.OK, "", ""},
		{"bad field", badField("run_id", "is required"), codes.InvalidArgument, "run_id", "run_id: is required"},
		{"not found, wrapped", wrap(store.ErrNotFound), codes.NotFound, "", ""},
		{"conflict", wrap(store.ErrConflict), codes.AlreadyExists, "", ""},
		{"finished", wrap(store.ErrFinished), codes.FailedPrecondition, "", ""},
		{"bad page token", wrap(store.ErrBadPageToken), codes.InvalidArgument, "page_token", ""},
		{"unavailable", wrap(store.ErrUnavailable), codes.Unavailable, "", ""},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded, "", ""},
		{"canceled", context.Canceled, codes.Canceled, "", ""},
		{"field error", wrap(&analysis.FieldError{Field: "tolerance", Msg: "must be >= 0"}), codes.InvalidArgument, "tolerance", ""},
		{"judge failed", &judgeFailed{runID: "r"}, codes.Internal, "", `run "r": its verdict cannot be computed`},
		{"a status", status.Error(codes.ResourceExhausted, "too big"), codes.ResourceExhausted, "", "too big"},
		{"anything else", errors.New("boom: secret detail"), codes.Internal, "", "internal error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.errorInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{},
				func(context.Context, any) (any, error) { return "resp", tt.err })
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("nil error mapped to %v", err)
				}
				return
			}
			wantCode(t, err, tt.code, tt.field)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tt.msg) {
				t.Errorf("message %q, want it to start with %q", msg, tt.msg)
			}
			serr := e.svc.streamErrorInterceptor(nil, nil, &grpc.StreamServerInfo{},
				func(any, grpc.ServerStream) error { return tt.err })
			if status.Code(serr) != tt.code {
				t.Errorf("stream: %v, want %v", serr, tt.code)
			}
		})
	}
	select {
	case <-e.svc.StoreUnavailable():
	default:
		t.Error("an unavailable store did not signal StoreUnavailable")
	}
}
