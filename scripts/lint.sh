#!/usr/bin/env bash
# Lint the package and the bench scripts, type-check the package (configured in pyproject.toml); needs the dev extra in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check kedit_vc bench
.venv/bin/mypy kedit_vc
