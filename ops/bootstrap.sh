#!/usr/bin/env bash
# One-command set-up for a fresh clone, then the job:
#   bash ops/bootstrap.sh run  [esper run options]   create/update .venv, then `esper run` on the bundled data
#   bash ops/bootstrap.sh test [pytest options]      create/update .venv, then ruff, mypy and pytest
#                                                    (prints the 15 slowest tests; -m "not slow" skips the slow ones)
# Installing is idempotent: a stamp of pyproject.toml, this script and the C source of eventstore._walc
# skips pip when nothing changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
python=${PYTHON:-python3}
torch_cpu="torch==2.13.0+cpu"
torch_gpu="torch>=2.6,<2.14"

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

install() {
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    local stamp="$venv/.esper-install-stamp" want
    # the C sources too: `pip install -e` builds eventstore._walc in place (pyproject.toml's ext-modules)
    want=$(cat pyproject.toml ops/bootstrap.sh eventstore/walc/* | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
    # torch first and explicitly, so the package's own requirement is already satisfied and pip
    # never resolves the registry's newest (CUDA) build on a CPU machine.
    if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
        if has_gpu; then
            "${pip[@]}" install "$torch_gpu"
        elif ! "${pip[@]}" install "$torch_cpu"; then
            echo "bootstrap: could not install $torch_cpu; point PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index and retry" >&2
            exit 1
        fi
    fi
    "${pip[@]}" install -e ".[dev,bench]"
    echo "$want" >"$stamp"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    run)
        install
        exec "$venv/bin/esper" run "$@"
        ;;
    test)
        install
        "$venv/bin/ruff" check .
        "$venv/bin/ruff" format --check .
        "$venv/bin/mypy"
        exec "$venv/bin/python" -m pytest --durations=15 "$@"
        ;;
    install)
        install
        ;;
    *)
        echo "usage: bash ops/bootstrap.sh run|test|install [options]" >&2
        exit 2
        ;;
esac
