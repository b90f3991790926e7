#!/usr/bin/env bash
# canary-stage.sh: one canary stage of a deployment, gated by canaryd.
#
# Creates the stage's run (or finds it again when the pipeline retries:
# the request id names the deployment), deploys the canary, lets it bake
# while stopping early on a critical ROLLBACK, then completes the run and
# acts on the final verdict by canaryctl's exit code:
#   0 PROMOTE, 10 HOLD, 20 ROLLBACK, 1 error, 2 bad usage or input.
# Use the built canaryctl binary: `go run` turns every exit code into 1.
#
# Settings (environment): CANARY_ADDR, CANARY_TOKEN (canaryctl's own);
# SERVICE, STAGE, CONFIG, REQUEST_ID (required); CANARY_LABEL and
# BASELINE_LABEL (key=value); BAKE (a duration, default 30m) and
# BAKE_SECONDS (how long to wait here, default 1800); POLL (seconds
# between looks, default 30); ON_HOLD (rollback, the default, or
# promote); SAMPLES (a JSON Lines file to ingest when the metrics are
# pushed rather than pulled by canaryd); START (RFC 3339, for a replay).
# It exits 0 when the canary was promoted, 1 when it was rolled back or
# the gate failed.
set -u

: "${SERVICE:?}" "${STAGE:?}" "${CONFIG:?}" "${REQUEST_ID:?}"
BAKE=${BAKE:-30m} BAKE_SECONDS=${BAKE_SECONDS:-1800} POLL=${POLL:-30} ON_HOLD=${ON_HOLD:-rollback}

# Replace these three with your deployer's commands.
deploy_canary() { echo "deploying the canary of $SERVICE to $STAGE"; }
promote() { echo "promoting $SERVICE in $STAGE"; }
rollback() { echo "rolling back $SERVICE in $STAGE"; }

create_args=(run create --service "$SERVICE" --stage "$STAGE" --config "$CONFIG" --bake "$BAKE" --request-id "$REQUEST_ID")
[ -n "${CANARY_LABEL:-}" ] && create_args+=(--canary-label "$CANARY_LABEL")
[ -n "${BASELINE_LABEL:-}" ] && create_args+=(--baseline-label "$BASELINE_LABEL")
[ -n "${START:-}" ] && create_args+=(--start "$START")
RUN=$(canaryctl "${create_args[@]}") || { echo "canaryd refused the run" >&2; exit 1; }
echo "run $RUN"

deploy_canary
if [ -n "${SAMPLES:-}" ]; then
  canaryctl ingest "$RUN" "$SAMPLES" || { rollback; exit 1; }
fi

# Bake: look now and then; a critical regression rolls back at once.
deadline=$((SECONDS + BAKE_SECONDS))
while [ "$SECONDS" -lt "$deadline" ]; do
  canaryctl judge "$RUN" > /dev/null
  code=$?
  case $code in
    0 | 10) ;;           # PROMOTE or HOLD so far: keep baking
    20) break ;;         # ROLLBACK: no need to wait
    *) echo "canaryd did not judge (exit $code); looking again" >&2 ;;
  esac
  sleep "$POLL"
done

canaryctl run complete "$RUN" --reason "bake ended"
verdict=$?
case $verdict in
  0) promote; exit 0 ;;
  10)
    echo "HOLD: not enough evidence either way" >&2
    if [ "$ON_HOLD" = promote ]; then promote; exit 0; fi
    rollback; exit 1 ;;
  20) rollback; exit 1 ;;
  *) echo "no verdict (exit $verdict): failing the stage" >&2; rollback; exit 1 ;;
esac
