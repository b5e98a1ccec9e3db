#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on a machine with an NVIDIA GPU, from a fresh copy of the tree,
#   1. a venv with the project and torch with CUDA (PyPI's torch wheel bundles CUDA on Linux),
#   2. the `gpu` tests (tests/test_gpu.py: device/dtype selection, fp16/bf16 generation,
#      training on the GPU, the torch Fréchet backend, the extractors),
#   3. the embedded default's generation and features on the GPU in float16 and float32 against
#      the bare diffusers loop (benchmarks/generation.py),
#   4. the Fréchet benchmark at d = 2,048: torch float64 on the GPU against numpy/scipy
#      (benchmarks/frechet.py),
# and writes one table, gpu_check.md, with the GPU named, to $OUT (or the folder given), beside
# each step's full log. Budget: under 8 minutes (install ~2-3, tests ~1, benchmarks ~2-3).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry [OUT_DIR]  # here: no install, no GPU needed; runs every
#                                                 # step in its smallest form on what torch sees
# Environment: VENV (default /tmp/surrogateshap-gpu-venv; an existing venv with CUDA torch is
# reused), PYTHON (default python3), PIP_ARGS (extra pip arguments, e.g. --find-links DIR for
# an offline wheel folder), STEP_TIMEOUT (seconds per step, default 300), COMMIT (the commit the
# table names, where the copy has no .git).
# An offline machine whose python already has CUDA torch and most of requirements.txt:
#   VENV=system PYTHON=python3 WHEELS=.whl bash benchmarks/gpu_check.sh OUT_DIR
# runs that python itself, no venv, after installing the wheels in WHEELS (the packages it lacks,
# each with the needs it lacks: pip gets --no-index --no-deps) into SITE (default
# /tmp/surrogateshap-gpu-site), which goes on PYTHONPATH after src/.
set -uo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,/^set -uo pipefail/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
fi

DRY=0
if [[ "${1:-}" == "--dry" ]]; then
    DRY=1
    shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$ROOT/gpu_check_out}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
PYTHON="${PYTHON:-python3}"
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
STARTED=$SECONDS
ROWS=()  # "check|setting|result|seconds"

row() { ROWS+=("$1|$2|$3|$4"); }

write_table() {  # "done", or rewritten after each step so that a run cut short keeps its rows
    {
        echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)$([[ $DRY == 1 ]] && echo ' (dry run)')$([[ ${1:-} == done ]] || echo ' (stopped before the end: the rows so far)')"
        echo
        echo "GPU: ${GPU_NAME:-?}; torch ${TORCH_INFO:-?}; nvidia-smi: $(head -1 "$OUT_DIR/nvidia-smi.txt" 2>/dev/null)"
        echo "Commit: ${COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')}; command: $([[ ${VENV:-} == system ]] && echo "VENV=system PYTHON=$PYTHON WHEELS=${WHEELS:-} ")bash benchmarks/gpu_check.sh$([[ $DRY == 1 ]] && echo ' --dry'); total $((SECONDS - STARTED)) s"
        echo
        echo "| check | setting | result | seconds |"
        echo "|---|---|---|---|"
        for r in "${ROWS[@]}"; do
            IFS='|' read -r a b c d <<<"$r"
            echo "| $a | $b | $c | $d |"
        done
    } >"$OUT_DIR/gpu_check.md"
}

run_step() {  # name, log file, command...
    local name="$1" log="$2"
    shift 2
    local t0=$SECONDS
    echo "== $name" >&2
    timeout "$STEP_TIMEOUT" "$@" >"$OUT_DIR/$log" 2>&1
    local rc=$?
    echo "   rc $rc, $((SECONDS - t0)) s (log: $OUT_DIR/$log)" >&2
    return $rc
}

# ------------------------------------------------------------------ 1. environment
if [[ $DRY == 1 ]]; then
    VENV="${VENV:-$ROOT/.venv}"
    PY="$VENV/bin/python"
    row "install" "dry run: the existing venv $VENV, nothing installed" "skipped" 0
elif [[ "${VENV:-}" == system ]]; then
    # An existing python with CUDA torch (an offline GPU machine's image), no venv: only the
    # packages it lacks, from the wheel folder WHEELS, into SITE (pip cannot resolve offline).
    PY="$(command -v "$PYTHON" || echo "$PYTHON")"
    t0=$SECONDS
    setting="$PY (no venv)"
    rc=0
    : >"$OUT_DIR/install.log"
    if [[ -n "${WHEELS:-}" ]]; then
        SITE="${SITE:-/tmp/surrogateshap-gpu-site}"
        wheels=("$WHEELS"/*.whl)
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}" >>"$OUT_DIR/install.log" 2>&1
        rc=$?
        export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH#"$ROOT/src"}"
        setting+=" + ${#wheels[@]} wheels from $WHEELS into $SITE"
    fi
    # pip --no-deps checked nothing: import what the steps import, and find the data files
    "$PY" - >>"$OUT_DIR/install.log" 2>&1 <<'PYEOF'
import importlib
import sys

missing = []
for name in ("torch", "diffusers", "transformers", "peft", "safetensors", "shap", "xgboost",
             "jsonschema", "sklearn", "scipy", "pandas", "pyarrow", "yaml", "PIL", "matplotlib"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), module.__file__)
    except Exception as error:
        missing.append(f"{name} ({type(error).__name__}: {error})")
try:
    from surrogateshap.proxy import lpips
    from surrogateshap.models import tiny

    print("clip vocabulary", tiny.clip_bpe_file())
    print("lpips linear weights", lpips.default_linear_file())
    if lpips.default_linear_file() is None:
        missing.append("lpips's weights/v0.1/alex.pth")
except Exception as error:
    missing.append(f"{type(error).__name__}: {error}")
print("missing:", "; ".join(missing) or "none")
sys.exit(1 if missing else 0)
PYEOF
    check=$?
    [[ $rc == 0 ]] && rc=$check
    row "install" "$setting" "$([[ $rc == 0 ]] && echo ok || echo "FAILED (rc $rc, install.log: $(grep '^missing:' "$OUT_DIR/install.log" | head -1 | cut -c1-300))")" $((SECONDS - t0))
else
    VENV="${VENV:-/tmp/surrogateshap-gpu-venv}"
    t0=$SECONDS
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        row "install" "reused $VENV (torch sees CUDA)" "ok" $((SECONDS - t0))
    else
        {
            "$PYTHON" -m venv "$VENV" &&
                "$VENV/bin/pip" install --quiet --upgrade pip ${PIP_ARGS:-} &&
                # torch first and alone, from PyPI: its Linux wheel bundles CUDA
                "$VENV/bin/pip" install --quiet ${PIP_ARGS:-} torch==2.13.0 &&
                # the project's pins, less torch (done) and xgboost-cpu (the CUDA xgboost on a GPU)
                grep -v -E '^(torch|xgboost-cpu)==' requirements.txt >"$OUT_DIR/requirements-gpu.txt" &&
                echo "xgboost==3.2.0" >>"$OUT_DIR/requirements-gpu.txt" &&
                "$VENV/bin/pip" install --quiet ${PIP_ARGS:-} -r "$OUT_DIR/requirements-gpu.txt" pytest==9.2.0 hypothesis==6.170.15 &&
                "$VENV/bin/pip" install --quiet ${PIP_ARGS:-} --no-deps -r requirements-nodeps.txt &&
                "$VENV/bin/pip" install --quiet ${PIP_ARGS:-} --no-deps -e .
        } >"$OUT_DIR/install.log" 2>&1
        rc=$?
        row "install" "venv $VENV, torch==2.13.0 from PyPI + requirements.txt" "$([[ $rc == 0 ]] && echo ok || echo "FAILED (rc $rc, install.log)")" $((SECONDS - t0))
        [[ $rc == 0 ]] || { echo "install failed: $OUT_DIR/install.log" >&2; }
    fi
    PY="$VENV/bin/python"
fi
GPU_NAME="$("$PY" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'none (torch sees no CUDA device)')" 2>/dev/null || echo "unknown (python failed)")"
TORCH_INFO="$("$PY" -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda)" 2>/dev/null || echo "?")"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT_DIR/nvidia-smi.txt" 2>&1
else
    echo "no nvidia-smi" >"$OUT_DIR/nvidia-smi.txt"
fi

write_table

# ------------------------------------------------------------------ 2. the gpu tests
t0=$SECONDS
run_step "gpu tests" gpu_tests.log "$PY" -m pytest -m gpu -rA -q -p no:cacheprovider tests/test_gpu.py tests/test_training.py
rc=$?
summary="$(grep -E '^[0-9]+ (passed|failed|skipped)|(passed|failed|skipped|error).* in [0-9.]+s' "$OUT_DIR/gpu_tests.log" | tail -1)"
row "gpu tests (tests/test_gpu.py, test_training.py)" "pytest -m gpu" "${summary:-no summary (rc $rc)}" $((SECONDS - t0))

# ------------------------------------------------------------------ 3. generation fp16 / fp32
if [[ $DRY == 1 ]]; then GEN_ARGS=(--quick); else GEN_ARGS=(--train-steps 50 --repeats 3); fi
DEVICE="$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)"
for dtype in float16 float32; do
    t0=$SECONDS
    run_step "generation $dtype" "generation_$dtype.log" "$PY" benchmarks/generation.py "${GEN_ARGS[@]}" --device "$DEVICE" --dtype "$dtype" --threads 4
    rc=$?
    result="$("$PY" - "$OUT_DIR/generation_$dtype.log" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
cells = {}
for line in text.splitlines():
    numbers = re.findall(r"(?<![\w.])(\d+\.\d+|nan)(?![\w.])", line)
    if line.startswith("bare diffusers loop (batch") and "bare" not in cells and len(numbers) >= 2:
        cells["bare"] = numbers[1]
    elif line.startswith("generation job (generate_pool)") and len(numbers) >= 3:
        cells["job"], cells["job_vs_bare"] = numbers[1], numbers[2]
    elif line.startswith("generation + features (the pool stage)") and len(numbers) >= 3:
        cells["stage"], cells["stage_vs_bare"] = numbers[1], numbers[2]
if {"bare", "job", "stage"} <= set(cells):
    print(
        f"bare loop {cells['bare']} images/s; generation job {cells['job']} images/s "
        f"({cells['job_vs_bare']} of bare); generation + features {cells['stage']} images/s "
        f"({cells['stage_vs_bare']} of bare)"
    )
else:
    tail = [l for l in text.splitlines() if l.strip()][-1:] or ["no output"]
    print("no table: " + tail[0][:150])
EOF
)"
    row "generation + features vs bare diffusers loop" "$DEVICE, $dtype, ${GEN_ARGS[*]}" "$result" $((SECONDS - t0))
    write_table
done

# ------------------------------------------------------------------ 4. Fréchet at d = 2048
if [[ $DRY == 1 ]]; then FRECHET_ARGS=(--dims 64 --coalitions 2); else FRECHET_ARGS=(--dims 512 2048 --coalitions 4); fi
t0=$SECONDS
run_step "frechet" frechet.log "$PY" benchmarks/frechet.py "${FRECHET_ARGS[@]}"
rc=$?
while read -r line; do
    [[ -z "$line" ]] && continue
    row "Fréchet distance per coalition" "d=$(awk '{print $1}' <<<"$line"), ${FRECHET_ARGS[*]}" \
        "$(awk '{r="scipy sqrtm " $3 " s, numpy eigvalsh " $4 " s, rel diff " $6; if (NF >= 9) r=r "; torch float64 GPU " $7 " s (" $8 " vs scipy), rel diff " $9; print r}' <<<"$line")" $((SECONDS - t0))
done < <(grep -E '^ *[0-9]+ +[0-9]+ ' "$OUT_DIR/frechet.log")
[[ $rc == 0 ]] || row "Fréchet distance per coalition" "${FRECHET_ARGS[*]}" "FAILED (rc $rc, frechet.log)" $((SECONDS - t0))

# ------------------------------------------------------------------ the table
write_table done
cat "$OUT_DIR/gpu_check.md"
