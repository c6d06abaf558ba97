#!/bin/sh
# The main job. Until the control server lands, this runs the forwarding
# engine from examples/forward.json: port 8080 forwards to the engine's own
# Prometheus endpoint on 9100, so http://127.0.0.1:8080/metrics shows the
# counters of the very forward that carried the request.
set -eu
cd "$(dirname "$0")/.."
echo "flowgate: forwarding 127.0.0.1:8080 -> 127.0.0.1:9100 (metrics)"
echo "flowgate: try  curl http://127.0.0.1:8080/metrics   (Ctrl-C stops)"
exec build/flowgate forward -c examples/forward.json --metrics 127.0.0.1:9100
