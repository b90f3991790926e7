package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/canaryd/canaryd/internal/alarm"
	"github.com/canaryd/canaryd/server/auth"
)

// AlertmanagerPath is where the Alertmanager webhook receiver is served on
// the HTTP port.
const AlertmanagerPath = "/v1/alertmanager"

// maxWebhookBytes bounds the body of one webhook delivery.
const maxWebhookBytes = 8 << 20

// webhookResponse is the JSON body of the webhook's answer.
type webhookResponse struct {
	// Alerts is the number of alerts recorded.
	Alerts int `json:"alerts"`
	// Runs are the running runs the firing alerts rolled back (or the
	// resolved ones were recorded with).
	Runs []string `json:"runs"`
	// Skipped counts the alerts out of the caller's scope.
	Skipped int `json:"skipped,omitempty"`
	// Error says what went wrong.
	Error string `json:"error,omitempty"`
}

// AlertmanagerHandler is Alertmanager's webhook receiver (POST
// AlertmanagerPath, payload version 4): each alert is recorded as
// ReportAlarm records an alarm, with the same authorization (a bearer
// token in the Authorization header: Alertmanager's http_config
// authorization). It answers 200 once every alert is recorded (a firing
// one has made the runs it matches ROLLBACK); 400 for a payload that is
// not Alertmanager's (not retried by Alertmanager); 401 or 403 when the
// caller may not report alarms; 503 or 500 when the store failed, which
// Alertmanager retries (a retry records nothing twice). Alerts of services
// a scoped caller may not use are skipped (and counted).
func (s *Service) AlertmanagerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeWebhook(w, http.StatusMethodNotAllowed, webhookResponse{Error: "POST an Alertmanager webhook payload"})
			return
		}
		ctx, err := s.guard.HTTP(r, auth.AlertmanagerWebhook)
		if err != nil {
			writeWebhook(w, auth.HTTPStatus(err), webhookResponse{Error: status.Convert(err).Message()})
			return
		}
		evs, err := alarm.DecodeWebhook(http.MaxBytesReader(w, r.Body, maxWebhookBytes), s.now())
		if err != nil {
			err = status.Error(codes.InvalidArgument, err.Error())
			s.guard.Audit(ctx, auth.AlertmanagerWebhook, err)
			writeWebhook(w, http.StatusBadRequest, webhookResponse{Error: status.Convert(err).Message()})
			return
		}
		resp := webhookResponse{Runs: []string{}}
		for _, ev := range evs {
			ids, err := s.recordAlarm(ctx, ev)
			var ae *apiError
			if errors.As(err, &ae) && ae.code == codes.PermissionDenied {
				resp.Skipped++
				s.log.Warn("alert out of the caller's scope skipped", "alarm", ev.GetName(), "err", err)
				continue
			}
			if err != nil {
				st := s.status(err)
				s.guard.Audit(ctx, auth.AlertmanagerWebhook, st, slog.Int("alerts", len(evs)))
				resp.Error = status.Convert(st).Message()
				writeWebhook(w, auth.HTTPStatus(st), resp)
				return
			}
			resp.Alerts++
			resp.Runs = append(resp.Runs, ids...)
		}
		s.guard.Audit(ctx, auth.AlertmanagerWebhook, nil, slog.Int("alerts", resp.Alerts), slog.Int("runs", len(resp.Runs)),
			slog.Int("skipped", resp.Skipped))
		writeWebhook(w, http.StatusOK, resp)
	})
}

func writeWebhook(w http.ResponseWriter, code int, resp webhookResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}
