#!/usr/bin/env bash
# modelhub demo, no internet needed once `make models` has run:
#   1. lay the real silero-vad ONNX models out as an ONNX Model Zoo (ONNX_HUB_MANIFEST.json),
#   2. serve that folder on 127.0.0.1 with python's http.server,
#   3. `modelhub pull onnx:<name>` each of them into a fresh store (MODELHUB_ONNX_URL -> the server),
#   4. `modelhub list`.
# Run it with `make demo` (which builds .venv and fetches the models first).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV_BIN="${VENV_BIN:-.venv/bin}"
PY="$VENV_BIN/python"
MODELHUB="$VENV_BIN/modelhub"

if [[ -t 2 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain" >&2; }
die() { echo "demo: error: $*" >&2; exit 1; }

[[ -x "$PY" ]] || die "$PY not found: run 'make demo' (it creates .venv)"
[[ -x "$MODELHUB" ]] || die "$MODELHUB not found: run 'make venv'"

work="$(mktemp -d "${TMPDIR:-/tmp}/modelhub-demo.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "the models: silero-vad ONNX files from the pinned PyPI wheel"
models_dir="$("$PY" - <<'EOF'
import json, os, subprocess, sys
out = subprocess.run([sys.executable, "scripts/fetch_models.py", "--list"],
                     check=True, stdout=subprocess.PIPE, text=True).stdout
paths = [p for p in json.loads(out).values() if p.endswith(".onnx")]
print(os.path.dirname(paths[0]))
EOF
)"
ls -l "$models_dir"/*.onnx >&2

say "an ONNX Model Zoo folder with its ONNX_HUB_MANIFEST.json"
"$PY" scripts/make_zoo.py --out "$work/zoo" --tag audio --tag voice-activity-detection \
    "$models_dir" >&2
mapfile -t names < <("$PY" -c '
import json, sys
for entry in json.load(open(sys.argv[1])):
    print(entry["model"])
' "$work/zoo/ONNX_HUB_MANIFEST.json")
echo "models in the manifest: ${names[*]}" >&2

say "serving it on 127.0.0.1 (python -m http.server, any free port)"
# Port 0: the kernel picks a free port and http.server prints it, so there is no race.
"$PY" -u -m http.server --bind 127.0.0.1 --directory "$work/zoo" 0 >"$work/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 100); do
    port="$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$work/server.log" | head -n1)"
    [[ -n "$port" ]] && break
    kill -0 "$server_pid" 2>/dev/null || die "http.server exited: $(tail -n1 "$work/server.log")"
    sleep 0.1
done
[[ -n "$port" ]] || die "http.server did not start within 10 s"
zoo_url="http://127.0.0.1:$port"
echo "zoo: $zoo_url/ONNX_HUB_MANIFEST.json" >&2

export MODELHUB_PATH="$work/store"
export MODELHUB_ONNX_URL="$zoo_url"
unset MODELHUB_MIRROR
echo "MODELHUB_PATH=$MODELHUB_PATH" >&2
echo "MODELHUB_ONNX_URL=$MODELHUB_ONNX_URL" >&2

say "modelhub pull onnx:<name> for each model (stdout: the stored path)"
for name in "${names[@]}"; do
    echo "\$ modelhub pull onnx:$name" >&2
    "$MODELHUB" pull "onnx:$name"
done

say "pulling one again: already in the store, no download"
echo "\$ modelhub pull onnx:${names[0]}" >&2
"$MODELHUB" pull "onnx:${names[0]}"

say "modelhub list"
"$MODELHUB" list

say "done: the store was $MODELHUB_PATH (removed on exit)"
