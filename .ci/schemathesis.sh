#!/usr/bin/env bash
# Property-based checks of the API documents against a real server: schemathesis generates
# requests from each listener's /openapi.json (valid and invalid ones) and checks every answer
# against the document (`--checks all`: status codes, content types, schemas, that valid data
# is taken and invalid data refused). A bounded number of examples per operation keeps the run
# to a minute or two on 2 cores.
#
# Usage: .ci/schemathesis.sh [SWITCHYARD_BINARY]   (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-${CARGO_TARGET_DIR:-target}/debug/switchyard}"
command -v schemathesis >/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check schemathesis
examples="${SCHEMATHESIS_EXAMPLES:-10}"

work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); peer=$(free_port); mv=$(free_port); altair=$(free_port)
testbed=$(free_port); funkytown=$(free_port)
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$api" --peer-listen "127.0.0.1:$peer" \
  --mv-listen "127.0.0.1:$mv" --altair-listen "127.0.0.1:$altair" \
  --testbed-listen "127.0.0.1:$testbed" --funkytown-listen "127.0.0.1:$funkytown" \
  --local-workers 0 >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT

run() {
  local name="$1" url="$2"
  shift 2
  echo "schemathesis: $name ($url)"
  schemathesis run "$url" --checks all --max-examples "$examples" \
    --phases examples,coverage,fuzzing --seed 1 --no-color --wait-for-schema 30 \
    --request-timeout 10 "$@"
}

# Operations left out, each with its reason.
#
# The check cannot apply: a WebSocket route answers 101 only to an upgrade, which an HTTP
# client cannot follow (the socket protocols are tested in tests/watch.rs and
# tests/altair_face.rs); /v1/watch with Accept: text/event-stream never ends; a lease request
# is a long poll of up to 60 s.
sockets=(--exclude-path /v1/watch --exclude-path /sockets/beers --exclude-path /v1/jobs/lease)
# FIXME: mismatches still to correct, in the server or the document (the run reports each
# when it is taken out of this list):
# - a check of the server that the document does not state yet: GET /v1/beers `type` and
#   GET /v1/runs/{id}/cells `status` are enums, GET /v1/jobs `queue` a name; POST /v1/agents,
#   POST /v1/deployments and PUT /v1/deployments/{name}[/state] (`dir` non-empty, `name` equal
#   to the path, `failed_action` only with `failed`), POST /v1/jobs[/batch] (the first argv
#   element non-empty), POST /v1/runs (a matrix or a funkytown file), POST /v1/bank/transfers
#   (`to` differs from `from`), POST /v1/beers (a volume with a glass);
# - a refusal that depends on state answered 400 rather than 404/409: POST /v1/devices with a
#   type that does not exist, an action a deployment has no template for, POST
#   /v1/cluster/leader to a node that is not a voter, DELETE /v1/cluster/members/0;
# - PUT /v1/deployments/{name}/document takes any JSON but is documented as an object;
# - the Altair face's own integer checks (`tapId` 3.0, `page_size` past 2^63).
fixme=(
  --exclude-path /v1/beers --exclude-path /v1/runs/{id}/cells --exclude-path /v1/jobs
  --exclude-path /v1/agents --exclude-path /v1/deployments --exclude-path /v1/deployments/{name}
  --exclude-path /v1/deployments/{name}/state --exclude-path /v1/deployments/{name}/document
  --exclude-path /v1/deployments/{name}/actions/{action} --exclude-path /v1/jobs/batch
  --exclude-path /v1/runs --exclude-path /v1/bank/transfers --exclude-path /v1/devices
  --exclude-path /v1/cluster/leader --exclude-path /v1/cluster/members/{node_id}
  --exclude-path /api/beers
)
# POST /v1/cluster/members is a join: it needs the cluster's join token (a signed request),
# so a generated request only ever gets the documented 403; it stays in.

run "API listener" "http://127.0.0.1:$api/openapi.json" "${sockets[@]}" "${fixme[@]}"
run "Altair listener" "http://127.0.0.1:$altair/openapi.json" "${sockets[@]}" "${fixme[@]}"
# FIXME: the mv, TestbedOS and funkytown listeners serve no document of their own yet, and the
# peer listener answers only signed requests (an unsigned one gets 401 JSON).
