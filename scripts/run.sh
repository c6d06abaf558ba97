#!/bin/sh
# The main job: the control server on 127.0.0.1:8080 with its SQLite store
# under ./data, and a local agent enrolled as the node "local". Prints the
# URL and the admin credential; Ctrl-C stops both.
#
#   FLOWGATE_ADMIN_PASSWORD  admin password on the first start (else generated)
#   FLOWGATE_LISTEN          default 127.0.0.1:8080
#   FLOWGATE_DATA            default ./data
set -eu
cd "$(dirname "$0")/.."
BIN=build/flowgate
LISTEN=${FLOWGATE_LISTEN:-127.0.0.1:8080}
DATA=${FLOWGATE_DATA:-data}
URL=http://$LISTEN
API=$URL/api/v1
AGENT_DIR=$DATA/agent
mkdir -p "$DATA" "$AGENT_DIR"
chmod 700 "$DATA" "$AGENT_DIR"

server_pid=""
agent_pid=""
stop() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

"$BIN" server --listen "$LISTEN" --data "$DATA" &
server_pid=$!

i=0
until curl -fsS -o /dev/null "$URL/" 2>/dev/null || curl -sS -o /dev/null "$API/me" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$server_pid" 2>/dev/null; then
		echo "make run: the server did not start (see above)" >&2
		exit 1
	fi
	sleep 0.1
done

json_field() { # json_field NAME < json  (flat string fields only)
	sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
}

if [ -n "${FLOWGATE_ADMIN_PASSWORD:-}" ]; then
	password=$FLOWGATE_ADMIN_PASSWORD
elif [ -r "$DATA/initial-admin-password" ]; then
	password=$(cat "$DATA/initial-admin-password")
else
	password=""
fi

# Enroll the local agent once; its token lives in its state directory.
if [ ! -s "$AGENT_DIR/token" ]; then
	if [ -z "$password" ]; then
		echo "make run: cannot enroll the local agent: set FLOWGATE_ADMIN_PASSWORD" >&2
		exit 1
	fi
	body=$(printf '{"username":"admin","password":"%s"}' "$password")
	session=$(curl -sS -X POST "$API/login" -d "$body" | json_field token)
	if [ -z "$session" ]; then
		echo "make run: cannot log in as admin to enroll the local agent" >&2
		exit 1
	fi
	auth="Authorization: Bearer $session"
	# a node "local" left from an earlier data dir without its token is replaced
	curl -sS -o /dev/null -X DELETE -H "$auth" "$API/nodes/local" || true
	token=$(curl -sS -X POST -H "$auth" "$API/nodes" -d '{"name":"local"}' | json_field token)
	curl -sS -o /dev/null -X POST -H "$auth" "$API/logout" || true
	if [ -z "$token" ]; then
		echo "make run: creating the node \"local\" failed" >&2
		exit 1
	fi
	(umask 077 && printf '%s\n' "$token" >"$AGENT_DIR/token")
fi

"$BIN" agent --server "ws://$LISTEN" --state "$AGENT_DIR" &
agent_pid=$!

echo
echo "flowgate is running"
echo "  web UI and API : $URL   (API under $API)"
if [ -n "${FLOWGATE_ADMIN_PASSWORD:-}" ]; then
	echo "  sign in        : admin / \$FLOWGATE_ADMIN_PASSWORD"
elif [ -n "$password" ]; then
	echo "  sign in        : admin / $password"
	echo "                   (from $DATA/initial-admin-password)"
else
	echo "  sign in        : admin / the password printed on the first start"
fi
echo "  local agent    : node \"local\", state in $AGENT_DIR"
echo "  Ctrl-C stops both."
echo

wait "$server_pid"
