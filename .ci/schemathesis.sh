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
  # The settings file names the few operations where a request the document calls valid can
  # still be refused with a documented answer (a 400 for a rule across fields that JSON Schema
  # cannot state; the mv face's 405 when the machine's state refuses a command), each with its
  # reason.
  schemathesis --config-file .ci/schemathesis.toml run "$url" --checks all --max-examples "$examples" \
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
# POST /v1/cluster/members is a join: it needs the cluster's join token (a signed request),
# so a generated request only ever gets the documented 403; it stays in.

run "API listener" "http://127.0.0.1:$api/openapi.json" "${sockets[@]}"
run "Altair listener" "http://127.0.0.1:$altair/openapi.json" "${sockets[@]}"
# The mv face: its WebSocket at / as above; a blocking command answers when the command has
# ended, after a delay of up to the type's max_duration (3600 s), longer than a request may
# wait here (the background_ routes take the same bodies and are checked).
run "mv listener" "http://127.0.0.1:$mv/openapi.json" --exclude-path / \
  --exclude-path-regex '^/(switch_on|switch_off|assign_resources|release_resources|configure|scan|clear_config)$'
# The funkytown reporter answers every method, as the original's Go handlers; its document
# lists the eight OpenAPI 3.1 has, but the check that an undocumented method gets 405 also
# sends QUERY, which OpenAPI 3.1 cannot document.
run "funkytown listener" "http://127.0.0.1:$funkytown/openapi.json" --exclude-checks unsupported_method
# The TestbedOS face: its WebSocket as above.
run "TestbedOS listener" "http://127.0.0.1:$testbed/openapi.json" --exclude-path /api/orchestration/ws
# The peer listener answers only signed requests: an unsigned one gets 401 JSON on every route
# (tests/security.rs), so there is nothing for generated requests to reach and no document.
