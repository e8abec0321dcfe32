#!/usr/bin/env bash
# One set-up command for latentnav: creates .venv (or uses $VENV), installs torch first,
# then the package in editable mode with its extras (tests, the face world, Ray for launcher=ray),
# then the packages that must go in with --no-deps (their declared dependencies would pull a different torch or wandb).
# Re-running it is fast: pip skips what is already satisfied.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
# torch first, pinned: a bare "torch" requirement would pull the newest (multi-GB) build.
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" -e ".[test,faces,ray]"
# Packages whose declared dependencies are wrong for us (see docs/experiment-a.md, the offline face world):
#  - facenet-pytorch pins torch<2.3; gan-face-generate pulls wandb.
"${PIP[@]}" --no-deps "facenet-pytorch==2.6.0" "gan-face-generate==1.1.1"
echo "[install] done: $("$VENV/bin/python" -c 'import torch, tianshou, pytorch_lightning as pl; print("torch", torch.__version__, "| tianshou", tianshou.__version__, "| lightning", pl.__version__)')"
