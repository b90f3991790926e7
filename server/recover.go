package server

import (
	"fmt"
	"runtime/debug"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Recovery is the last resort against a panic in a handler (a bug: input
// is validated and the judge recovers on its own, see judgeData): the call
// answers INTERNAL, the panic is logged once with its stack, and the
// daemon stays up. It covers the handler's own goroutine (and the
// interceptors after the service's in the chain); goroutines a handler
// starts recover on their own.

// errPanic is what a client sees of a recovered panic.
var errPanic = status.Error(codes.Internal, "internal error")

// recovered logs the panic p of a call to method with the stack of the
// panicking goroutine and returns errPanic. It must be called from the
// deferred function that recovered p.
func (s *Service) recovered(method string, p any) error {
	s.log.Error("handler panicked", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return errPanic
}
