package server

import (
	"context"

	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// The service scope of a caller (package auth) is enforced by the guard
// for every RPC that names a service or a run. The listings (ListRuns,
// ListVerdicts) without a service filter are the exception: they return
// only the items of the caller's services, which only the handler can
// filter.

var _ auth.Runs = (*Service)(nil)

// RunService returns the service of a run, for the auth guard: the run is
// loaded into memory if it is not there (the call that asks for it is
// about to use it). Errors are statuses, as the guard returns them (it
// runs before the handler, so the error interceptor does not see them):
// NOT_FOUND for an unknown run, INVALID_ARGUMENT for an empty id.
func (s *Service) RunService(ctx context.Context, runID string) (string, error) {
	lr, err := s.use(ctx, runID)
	if err != nil {
		return "", s.status(err)
	}
	defer s.release(lr)
	return lr.service, nil
}

// maxScopePages bounds the store pages one listing reads for a caller
// restricted to some services.
const maxScopePages = 10

// listService returns the service filter of a listing for the caller of
// ctx, and the caller when the listing must still be filtered by its
// scope. The guard has checked that a filter the request sets is in scope.
// A caller restricted to a single service without glob characters gets
// that service as the filter, which the store applies itself.
func listService(ctx context.Context, filter string) (string, *auth.Caller) {
	c := auth.CallerFrom(ctx)
	if filter != "" || c == nil || c.AllServices() {
		return filter, nil
	}
	if only, ok := c.OnlyService(); ok {
		return only, nil
	}
	return "", c
}

// listScoped returns one page of a listing of the store (list), keeping
// only the items of the services c may use; with c nil, list's page
// itself.
//
// Page size: the page holds up to page.Limit() items of c's services. The
// store is read a page of that size at a time, up to maxScopePages pages,
// until the page is full or the listing ends. When the page fills up in
// the middle of a store page, that store page is read again up to the last
// item kept, so that the next token resumes right after it (the stores'
// tokens are positions after the last item returned). So pages are full
// except the last, and tokens work as without a scope; but when c's
// services are rare among the items, a page may hold fewer items, or none,
// while next_page_token is set: a client pages until the token is empty.
func listScoped[T any](c *auth.Caller, page store.Page, service func(T) string,
	list func(store.Page) ([]T, string, error)) ([]T, string, error) {
	if c == nil {
		return list(page)
	}
	limit := page.Limit()
	tok := page.Token
	var out []T
	for range maxScopePages {
		items, next, err := list(store.Page{Size: limit, Token: tok})
		if err != nil {
			return nil, "", err
		}
		cut := -1 // index of the first item in scope that does not fit
		kept := len(out)
		for i, it := range items {
			if !c.AllowsService(service(it)) {
				continue
			}
			if kept == limit {
				cut = i
				break
			}
			kept++
		}
		if cut > 0 {
			// items[:cut] completes the page: read it again alone, for
			// the token after it.
			if items, next, err = list(store.Page{Size: cut, Token: tok}); err != nil {
				return nil, "", err
			}
		}
		for _, it := range items {
			if c.AllowsService(service(it)) {
				out = append(out, it)
			}
		}
		tok = next
		if next == "" || len(out) >= limit {
			break
		}
	}
	return out, tok, nil
}
