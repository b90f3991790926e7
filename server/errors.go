package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/server/store"
)

// This file is the one place where errors become gRPC statuses. Handlers
// return what went wrong as an *apiError (a client error this package
// diagnosed), a store sentinel, an analysis field error or a context error,
// and the innermost interceptor (errorInterceptor) maps it with
// Service.status, so that the auth guard's audit log and the metrics see
// the status the client gets. Anything else is a bug or an unexpected
// backend failure and becomes INTERNAL with a generic message (the detail
// goes to the log): codes received from downstream calls are never passed
// through. Errors that are statuses already (of the stream's transport,
// of the request codec) pass as they are.

// apiError is an error diagnosed by this package, with the code to return
// and, for INVALID_ARGUMENT, the offending fields.
type apiError struct {
	code       codes.Code
	msg        string
	violations []*errdetails.BadRequest_FieldViolation
	// resource, if set, is sent as a detail (e.g. the run an ALREADY_EXISTS
	// is about).
	resource *errdetails.ResourceInfo
}

func (e *apiError) Error() string { return e.msg }

// status returns the gRPC status of e, with a BadRequest detail when it
// names fields.
func (e *apiError) status() *status.Status {
	st := status.New(e.code, e.msg)
	if e.resource != nil {
		if withDetails, err := st.WithDetails(e.resource); err == nil {
			st = withDetails
		}
	}
	if len(e.violations) == 0 {
		return st
	}
	withDetails, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: e.violations})
	if err != nil {
		return st
	}
	return withDetails
}

// violation names one bad field of a request by its path, e.g.
// "batch.samples[3].value" or "config.metrics[1].tolerance".
func violation(field, format string, args ...any) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)}
}

// invalid returns an INVALID_ARGUMENT error naming the fields in vs. Its
// message is the first violation, plus a count of the others.
func invalid(vs ...*errdetails.BadRequest_FieldViolation) *apiError {
	msg := "invalid argument"
	if len(vs) > 0 {
		msg = vs[0].GetField() + ": " + vs[0].GetDescription()
		if len(vs) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(vs)-1)
		}
	}
	return &apiError{code: codes.InvalidArgument, msg: msg, violations: vs}
}

// badField is invalid with one violation.
func badField(field, format string, args ...any) *apiError {
	return invalid(violation(field, format, args...))
}

func notFound(format string, args ...any) *apiError {
	return &apiError{code: codes.NotFound, msg: fmt.Sprintf(format, args...)}
}

func failedPrecondition(format string, args ...any) *apiError {
	return &apiError{code: codes.FailedPrecondition, msg: fmt.Sprintf(format, args...)}
}

// fieldViolations turns analysis field errors into violations under
// prefix: analysis says "metrics[1].tolerance", the API says
// "config.metrics[1].tolerance". ok is false when err is not a field error.
func fieldViolations(prefix string, err error) (vs []*errdetails.BadRequest_FieldViolation, ok bool) {
	var fes analysis.FieldErrors
	if !asFieldErrors(err, &fes) {
		return nil, false
	}
	for _, fe := range fes {
		field := prefix
		if fe.Field != "" && fe.Field != "config" {
			field = joinPath(prefix, fe.Field)
		}
		vs = append(vs, violation(field, "%s", fe.Msg))
	}
	return vs, true
}

// asFieldErrors extracts analysis.FieldErrors or a single
// *analysis.FieldError from err's chain.
func asFieldErrors(err error, dst *analysis.FieldErrors) bool {
	var fes analysis.FieldErrors
	if errors.As(err, &fes) {
		*dst = fes
		return true
	}
	var fe *analysis.FieldError
	if errors.As(err, &fe) {
		*dst = analysis.FieldErrors{fe}
		return true
	}
	return false
}

func joinPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// errorInterceptor maps the error of a unary handler to its status.
func (s *Service) errorInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, s.status(err)
	}
	return resp, nil
}

// streamErrorInterceptor maps the error of a streaming handler to its
// status.
func (s *Service) streamErrorInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return s.status(handler(srv, ss))
}

// status maps err to the status the client gets; see the file comment.
func (s *Service) status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status().Err()
	}
	var jf *judgeFailed
	if errors.As(err, &jf) {
		return status.Error(codes.Internal, jf.Error()) // the panic was logged
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, store.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, store.ErrConflict):
		code = codes.AlreadyExists
	case errors.Is(err, store.ErrFinished):
		code = codes.FailedPrecondition
	case errors.Is(err, store.ErrBadPageToken):
		return badField("page_token", "is not a token this server issued for this listing").status().Err()
	case errors.Is(err, store.ErrUnavailable):
		code = codes.Unavailable
		select {
		case s.unavailable <- struct{}{}:
		default:
		}
	default:
		if vs, ok := fieldViolations("", err); ok {
			return invalid(vs...).status().Err()
		}
	}
	if code == codes.Internal {
		s.log.Error("internal error", "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(code, err.Error())
}
