"""The demo's own commit, through the CLI on SmolLM2: the figures the README states.

README ("Results on this CPU"): the four demo edits take (reliability 1.00, generalization
1.00 on their paraphrases, locality 0.83 as agreement with the base model's predictions,
neighbourhood 1.00). Measured (session 7, `kvc commit specs/demo.kedit --json`): exactly
those, with generative reliability 1.00. The floors sit below by less than one probe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_kvc

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_demo_commit_through_the_cli_holds_the_readme_figures(project) -> None:  # noqa: ANN001
    init = run_kvc("init", "--model", "smollm2")
    assert init.exit_code == 0, init.output
    result = run_kvc("commit", str(REPO / "specs" / "demo.kedit"), "-m", "demo", "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["metrics"]
    metrics, pre = report["metrics"], report["pre_metrics"]
    assert len(report["rows"]) == 4
    for row in report["rows"]:  # every fact takes, by token accuracy, CF comparison and greedy answer
        m = row["metrics"]
        assert m["reliability"] == 1.0 and m["efficacy"] == 1.0 and m["gen_reliability"] == 1.0, row
        assert m["generalization_cf"] >= 0.9, row
    assert metrics["generalization"] >= 0.9, metrics
    assert metrics["locality"] >= 0.8, metrics                          # README 0.83
    assert metrics["neighbourhood"] >= 0.9 * pre["neighbourhood"], (metrics, pre)  # README 1.00 = pre
