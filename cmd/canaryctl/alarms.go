package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// exitBlocked is the exit code of `canaryctl blockers` when the
// deployment may not start.
const exitBlocked = 30

// newAlarmCmd returns `canaryctl alarm fire|resolve|list`.
func newAlarmCmd(g *globals) *cobra.Command {
	return newGroupCmd("alarm", "Report and list alarms (for systems without Alertmanager)",
		newAlarmReportCmd(g, "fire", canaryv1.AlarmState_ALARM_STATE_FIRING),
		newAlarmReportCmd(g, "resolve", canaryv1.AlarmState_ALARM_STATE_RESOLVED),
		newAlarmListCmd(g))
}

func newAlarmReportCmd(g *globals, verb string, state canaryv1.AlarmState) *cobra.Command {
	cmd := &cobra.Command{
		Use:   verb + " NAME --label k=v ...",
		Short: map[string]string{"fire": "Report an alarm firing: running runs it matches roll back", "resolve": "Report an alarm resolved"}[verb],
		Long: `Report an alarm as Alertmanager's webhook would deliver it. A firing alarm that matches a running
run (its config's alarms: rules) makes the run's verdict ROLLBACK at once; a deploy policy's alarms
block deployments while it fires. The alarm is identified by --fingerprint, else by its name and
labels: resolve it with the same ones.`,
		Example: `  canaryctl alarm fire CheckoutErrors --label severity=page --label service=checkout \
      --summary "5xx above 5% for 5 minutes"
  canaryctl alarm resolve CheckoutErrors --label severity=page --label service=checkout`,
		Args: exactArgs(1, "alarm name"),
	}
	fs := cmd.Flags()
	lbls := labelsFlag{}
	fs.Var(lbls, "label", "label of the alarm, key=value (repeatable)")
	summary := fs.String("summary", "", "what the alarm says, in words")
	fp := fs.String("fingerprint", "", "identity of the alarm (default: a hash of its name and labels)")
	at := fs.String("time", "", "RFC 3339 time it started (fire) or ended (resolve); default: now")
	url := fs.String("url", "", "a link to the alarm's source")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		ev := &canaryv1.AlarmEvent{Name: pos[0], Summary: *summary, Labels: lbls, State: state, Fingerprint: *fp, Url: *url}
		if *at != "" {
			t, err := time.Parse(time.RFC3339Nano, *at)
			if err != nil {
				return usagef("--time: want an RFC 3339 time (got %q)", *at)
			}
			if state == canaryv1.AlarmState_ALARM_STATE_FIRING {
				ev.StartTime = timestamppb.New(t)
			} else {
				ev.EndTime = timestamppb.New(t)
			}
		}
		return runAlarmReport(cmd.Context(), g, ev)
	}
	return cmd
}

func runAlarmReport(ctx context.Context, g *globals, ev *canaryv1.AlarmEvent) error {
	if err := checkOutput(g.cf.out); err != nil {
		return err
	}
	resp, err := unary(ctx, g.cf, func(ctx context.Context, c *client) (*canaryv1.ReportAlarmResponse, error) {
		return c.ReportAlarm(ctx, &canaryv1.ReportAlarmRequest{Alarm: ev})
	})
	if err != nil {
		return err
	}
	if structured(g.cf.out) {
		return printMessage(g.e.stdout, g.cf.out, resp)
	}
	a := resp.GetAlarm()
	state := strings.ToLower(strings.TrimPrefix(a.GetState().String(), "ALARM_STATE_"))
	fmt.Fprintf(g.e.stdout, "alarm %s %s (fingerprint %s)\n", a.GetName(), state, a.GetFingerprint())
	if ids := resp.GetRunIds(); len(ids) > 0 {
		what := "rolled back"
		if a.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED {
			what = "recorded with"
		}
		fmt.Fprintf(g.e.stdout, "%s %d running run(s): %s\n", what, len(ids), strings.Join(ids, " "))
	}
	return nil
}

func newAlarmListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the alarms firing and resolved in the last 24 hours, or those recorded with a run",
		Example: `  canaryctl alarm list --state firing
  canaryctl alarm list --run "$RUN" -o json`,
		Args: exactArgs(0, ""),
	}
	fs := cmd.Flags()
	runID := fs.String("run", "", "the alarms recorded with this run")
	service := fs.String("service", "", "only alarms with this service label")
	state := fs.String("state", "", "only firing or resolved alarms")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := &canaryv1.ListAlarmsRequest{RunId: *runID, Service: *service}
		switch *state {
		case "":
		case "firing":
			req.State = canaryv1.AlarmState_ALARM_STATE_FIRING
		case "resolved":
			req.State = canaryv1.AlarmState_ALARM_STATE_RESOLVED
		default:
			return usagef("--state must be firing or resolved (got %q)", *state)
		}
		return runAlarmList(cmd.Context(), g, req)
	}
	return cmd
}

func runAlarmList(ctx context.Context, g *globals, req *canaryv1.ListAlarmsRequest) error {
	if err := checkOutput(g.cf.out); err != nil {
		return err
	}
	resp, err := unary(ctx, g.cf, func(ctx context.Context, c *client) (*canaryv1.ListAlarmsResponse, error) {
		return c.ListAlarms(ctx, req)
	})
	if err != nil {
		return err
	}
	if structured(g.cf.out) {
		return printMessage(g.e.stdout, g.cf.out, resp)
	}
	tw := tabwriter.NewWriter(g.e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tSTATE\tNAME\tLABELS\tSUMMARY")
	for _, a := range resp.GetAlarms() {
		state := strings.ToLower(strings.TrimPrefix(a.GetState().String(), "ALARM_STATE_"))
		if a.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED {
			state += " " + tsString(a.GetEndTime())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", tsString(a.GetStartTime()), state, a.GetName(), labels(a.GetLabels()),
			truncate(oneLine(a.GetSummary()), 80))
	}
	return tw.Flush()
}

// newBlockersCmd returns `canaryctl blockers`.
func newBlockersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "blockers --service S --stage T [--override REASON]",
		Short: "Check whether a deployment may start now (exit 0 allowed, 30 blocked)",
		Long: `Ask canaryd whether a deployment of a service to a stage may start now: it is blocked while an
alarm of the service's deploy policy fires, or outside the policy's deploy windows. Exit code 0: allowed;
30: blocked, with the reasons on stdout. --override lets a blocked deployment start anyway (to recover
from an incident): it needs the operate role, and canaryd records who, why and when.`,
		Example: `  canaryctl blockers --service checkout --stage prod || exit 1
  canaryctl blockers --service checkout --stage prod --override "INC-4711: roll forward the fix"`,
		Args: exactArgs(0, ""),
	}
	fs := cmd.Flags()
	service := fs.String("service", "", "service to deploy (required)")
	stage := fs.String("stage", "", "stage to deploy to (required)")
	override := fs.String("override", "", "deploy even if blocked, for this reason (recorded)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *service == "" || *stage == "" {
			return usagef("--service and --stage are required")
		}
		return runBlockers(cmd.Context(), g, &canaryv1.CheckDeployRequest{Service: *service, Stage: *stage, OverrideReason: *override})
	}
	return cmd
}

func runBlockers(ctx context.Context, g *globals, req *canaryv1.CheckDeployRequest) error {
	if err := checkOutput(g.cf.out); err != nil {
		return err
	}
	resp, err := unary(ctx, g.cf, func(ctx context.Context, c *client) (*canaryv1.CheckDeployResponse, error) {
		return c.CheckDeploy(ctx, req)
	})
	if err != nil {
		return err
	}
	if structured(g.cf.out) {
		if err := printMessage(g.e.stdout, g.cf.out, resp); err != nil {
			return err
		}
	} else {
		w := g.e.stdout
		switch {
		case resp.GetOverride() != nil:
			o := resp.GetOverride()
			fmt.Fprintf(w, "allowed by override (recorded: %s at %s: %s)\n", o.GetWho(), tsString(o.GetTime()), o.GetReason())
			for _, r := range o.GetBlockedReasons() {
				fmt.Fprintf(w, "  overridden: %s\n", r)
			}
		case resp.GetAllowed():
			fmt.Fprintln(w, "allowed")
		default:
			fmt.Fprintln(w, "blocked")
			for _, r := range resp.GetReasons() {
				fmt.Fprintf(w, "  %s\n", r)
			}
			if nw := resp.GetNextWindow(); nw != nil {
				fmt.Fprintf(w, "  next window opens %s\n", tsString(nw))
			}
		}
	}
	if !resp.GetAllowed() {
		return exitCodeError{exitBlocked}
	}
	return nil
}

// newPolicyCmd returns `canaryctl policy put|get`.
func newPolicyCmd(g *globals) *cobra.Command {
	put := &cobra.Command{
		Use:   "put FILE",
		Short: "Store a service's deploy policy (YAML; - for standard input)",
		Example: `  canaryctl policy put checkout-policy.yaml    # service: checkout, deploy_windows:, alarms:
  canaryctl policy put - <<< 'service: "*"'`,
		Args: exactArgs(1, "policy file (FILE, or - for standard input)"),
	}
	put.RunE = func(cmd *cobra.Command, pos []string) error {
		in, closeIn, err := openInput(g.e, pos[0])
		if err != nil {
			return err
		}
		src, err := io.ReadAll(in)
		closeIn()
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		resp, err := unary(cmd.Context(), g.cf, func(ctx context.Context, c *client) (*canaryv1.PutDeployPolicyResponse, error) {
			return c.PutDeployPolicy(ctx, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Yaml{Yaml: string(src)}})
		})
		if err != nil {
			return err
		}
		if structured(g.cf.out) {
			return printMessage(g.e.stdout, g.cf.out, resp)
		}
		fmt.Fprintf(g.e.stdout, "deploy policy of %s stored\n", resp.GetPolicy().GetPolicy().GetService())
		return nil
	}
	get := &cobra.Command{
		Use:     "get SERVICE",
		Short:   "Show the deploy policy that applies to a service (its own, else the default \"*\")",
		Example: `  canaryctl policy get checkout -o json`,
		Args:    exactArgs(1, "service"),
	}
	get.RunE = func(cmd *cobra.Command, pos []string) error {
		resp, err := unary(cmd.Context(), g.cf, func(ctx context.Context, c *client) (*canaryv1.GetDeployPolicyResponse, error) {
			return c.GetDeployPolicy(ctx, &canaryv1.GetDeployPolicyRequest{Service: pos[0]})
		})
		if err != nil {
			return err
		}
		if structured(g.cf.out) || resp.GetPolicy().GetYaml() == "" {
			return printMessage(g.e.stdout, g.cf.out, resp)
		}
		_, err = io.WriteString(g.e.stdout, resp.GetPolicy().GetYaml())
		return err
	}
	return newGroupCmd("policy", "Manage deploy policies (deploy windows and blocking alarms)", put, get)
}
