#!/usr/bin/env bash
# tools/fuzz-campaign.sh VERSION INPUTS [corosnap_fuzz options...]
#   (make fuzz FUZZ_VERSION=3.12 FUZZ_INPUTS=20000 [FUZZ_SEED=0] [FUZZ_JOBS=1] [FUZZ_ARGS=...])
#
# The fuzzing campaign (tools/corosnap_fuzz) on one CPython version: finds the
# interpreter as tools/test-matrix.sh does, makes its .venv-X.Y through the
# Makefile, and runs `python -m corosnap_fuzz` nice'd, writing the report and
# the failing inputs under build/fuzz/X.Y/.  The last lines are the outcome
# table, with the throughput (inputs/s) on its first line.
#
# Env knobs: FUZZ_SEED (0), FUZZ_JOBS (1), FUZZ_ENGINES (the engines every
# input goes through, which must agree; default "c,python"; "c" or "python"
# for one).  Exit status: 1 when any
# input failed (crash, hang, other, memoryerror, engines that differ).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ $# -ge 2 ] || { echo "usage: $0 VERSION INPUTS [options]" >&2; exit 2; }
VER=$1 INPUTS=$2
shift 2

is_version() {  # is_version PYTHON X.Y: that interpreter runs, and is that version
    "$1" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$2')" 2>/dev/null
}

find_python() {  # same search order as tools/test-matrix.sh
    local ver=$1 var cand
    var="PYTHON_${ver/./_}"
    for cand in "${!var:-}" "$(command -v "python$ver" 2>/dev/null)" \
                $(ls -d "$HOME"/.pyenv/versions/"$ver".*/bin/"python$ver" 2>/dev/null | sort -Vr) \
                "${XDG_CACHE_HOME:-$HOME/.cache}/cpython/$ver/bin/python$ver"; do
        if [ -n "$cand" ] && [ -x "$cand" ] && is_version "$cand" "$ver"; then
            echo "$cand"
            return
        fi
    done
}

PY=$(find_python "$VER")
[ -n "$PY" ] || { echo "fuzz-campaign: no CPython $VER found (make test-matrix builds one)" >&2; exit 2; }
make -s venv PYTHON="$PY" >&2 || exit 2
OUT=build/fuzz/$VER
mkdir -p "$OUT"
ENGINES=(--engines "${FUZZ_ENGINES:-c,python}")
echo "fuzz-campaign: CPython $VER ($PY), $INPUTS inputs, seed ${FUZZ_SEED:-0}, ${FUZZ_JOBS:-1} job(s), engines ${FUZZ_ENGINES:-c,python}; report in $OUT/fuzz.json" >&2
PYTHONPATH=tools exec nice ".venv-$VER/bin/python" -m corosnap_fuzz --inputs "$INPUTS" \
    --seed "${FUZZ_SEED:-0}" --jobs "${FUZZ_JOBS:-1}" --report "$OUT/fuzz.json" \
    --crash-dir "$OUT/findings" "${ENGINES[@]}" "$@"
