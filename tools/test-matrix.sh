#!/usr/bin/env bash
# tools/test-matrix.sh [VERSION ...]      (make test-matrix [MATRIX_ARGS=...])
#
# Run the test suite on every CPython version corosnap supports (default: the
# SUPPORTED tuple in src/corosnap/frames/__init__.py), each in its own
# .venv-X.Y made by the Makefile, and print a pass/fail summary with test
# counts and wall times.
#
# The oldest supported version (3.11) runs `make test`: ruff + mypy + pytest on
# the C engine and again on the pure-Python one (COROSNAP_PUREPYTHON=1).
# Static checks do not depend on the interpreter, so the other versions run
# `make pytest` only.  `tools/test-matrix.sh 3.14 3.15` runs just those.
#
# Interpreters are found, in order, from: $PYTHON_X_Y (e.g. PYTHON_3_14), the
# PATH (pythonX.Y), ~/.pyenv/versions/X.Y.*, ~/.cache/cpython/X.Y (where
# build-cpython.sh puts them); failing all of these, the script builds one
# with build-cpython.sh ($BUILD_CPYTHON, default ../shared/tools/build-cpython.sh
# beside the repository: CI runs in a fresh clone with shared/ next to it).
#
# Env knobs: MATRIX_JOBS (versions run at once; default 1: the suite has
# timing-sensitive tests and CI has 2 cores), MATRIX_LOG_DIR (default
# build/matrix), PYTEST_ARGS (passed to pytest), BUILD_CPYTHON.
# Exit status: 0 when every version passed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD_CPYTHON=${BUILD_CPYTHON:-$ROOT/../shared/tools/build-cpython.sh}
LOG_DIR=${MATRIX_LOG_DIR:-$ROOT/build/matrix}
JOBS=${MATRIX_JOBS:-1}
mkdir -p "$LOG_DIR"

# Single source of truth: frames.SUPPORTED, e.g. ((3, 11), (3, 12), ...)
mapfile -t SUPPORTED < <(sed -n 's/^SUPPORTED = //p' src/corosnap/frames/__init__.py \
    | grep -oE '\(3, [0-9]+\)' | sed -E 's/\(3, ([0-9]+)\)/3.\1/')
[ ${#SUPPORTED[@]} -gt 0 ] || { echo "test-matrix: cannot read frames.SUPPORTED" >&2; exit 2; }
if [ $# -gt 0 ]; then
    VERSIONS=("$@")
else
    VERSIONS=("${SUPPORTED[@]}")
fi
STATIC_ON=${SUPPORTED[0]}  # ruff + mypy run with the oldest supported version only

log() { printf '[test-matrix] %s\n' "$*" >&2; }

is_version() {  # is_version PYTHON X.Y: that interpreter, and not free-threaded
    "$1" -c "import sys, sysconfig; sys.exit(not ('%d.%d' % sys.version_info[:2] == '$2'
             and not sysconfig.get_config_var('Py_GIL_DISABLED')))" 2>/dev/null
}

find_python() {  # find_python X.Y -> path on stdout, or nothing
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

get_python() {  # get_python X.Y -> path on stdout (building it if needed)
    local ver=$1 py
    py=$(find_python "$ver")
    if [ -z "$py" ]; then
        if [ ! -x "$BUILD_CPYTHON" ]; then
            log "no CPython $ver found and no build script at $BUILD_CPYTHON"
            return 1
        fi
        log "building CPython $ver with $BUILD_CPYTHON (log: $LOG_DIR/build-$ver.log)"
        py=$("$BUILD_CPYTHON" "$ver" 2>"$LOG_DIR/build-$ver.log" | tail -n 1)
        is_version "$py" "$ver" || { log "build of CPython $ver failed"; return 1; }
    fi
    echo "$py"
}

run_one() {  # run_one X.Y: writes $LOG_DIR/result-X.Y
    local ver=$1 py target start end status summary
    start=$(date +%s)
    target=pytest
    [ "$ver" = "$STATIC_ON" ] && target=test
    if py=$(get_python "$ver"); then
        log "CPython $ver ($py): make $target"
        make --no-print-directory "$target" PYTHON="$py" >"$LOG_DIR/test-$ver.log" 2>&1
        status=$?
    else
        py="(none)"
        status=127
    fi
    end=$(date +%s)
    summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$LOG_DIR/test-$ver.log" \
              2>/dev/null | sed -E 's/^=+ //; s/ =+$//; s/ in [0-9.]+s.*//' | paste -sd '+' -)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$ver" "$([ $status = 0 ] && echo PASS || echo FAIL)" \
        "$((end - start))" "make $target" "${summary:-no pytest summary}" "$py" \
        >"$LOG_DIR/result-$ver"
}

T0=$(date +%s)
rm -f "$LOG_DIR"/result-*
for ver in "${VERSIONS[@]}"; do
    if [ "$JOBS" -gt 1 ]; then
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
        run_one "$ver" &
    else
        run_one "$ver"
    fi
done
wait
T1=$(date +%s)

fail=0
printf '\n%-7s %-5s %7s  %-11s %-36s %s\n' version result wall target tests interpreter
for ver in "${VERSIONS[@]}"; do
    IFS=$'\t' read -r v res secs target summary py <"$LOG_DIR/result-$ver"
    printf '%-7s %-5s %6ss  %-11s %-36s %s\n' "$v" "$res" "$secs" "$target" "$summary" "$py"
    [ "$res" = PASS ] || fail=1
done
printf 'total wall time: %ss (logs in %s)\n' "$((T1 - T0))" "$LOG_DIR"
exit $fail
