"""The gate and `kvc check`: thresholds, tables and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json

import pytest

from kedit_vc.cli.main import main
from kedit_vc.compiler.plan import EditorCall, Expectation, Plan
from kedit_vc.errors import UsageError
from kedit_vc.eval import EvalReport, check, thresholds_from
from kedit_vc.eval.gate import run_gate

REPORT = EvalReport(metrics={"reliability": 0.98, "locality": 0.91, "reliability_cf": 1.0, "fluency": 6.1},
                    pre_metrics={"reliability": 0.02}, counts={"reliability": 10, "locality": 10})


def test_all_thresholds_hold():
    result = run_gate(REPORT, [Expectation("reliability", ">=", 0.9)], {"locality": 0.9})
    assert result.exit_code == 0 and not result.failed
    assert result.summary() == "all 2 thresholds hold"
    assert [r.threshold.source for r in result.rows] == ["spec", "flag"]


def test_a_shortfall_fails_with_a_table():
    result = run_gate(REPORT, (), {"locality": 0.95, "reliability": 0.9})
    assert result.exit_code == 1
    assert [r.threshold.metric for r in result.failed] == ["locality"]
    table = result.table(only_failed=True)
    assert "locality" in table and ">= 0.95" in table and "0.9100" in table and "FAIL" in table
    assert "reliability " not in table


def test_a_missing_metric_fails():
    result = check(REPORT, thresholds_from((), {"portability": 0.5}))
    assert result.exit_code == 1 and "missing" in result.table()


def test_operators_from_expectations():
    assert run_gate(REPORT, [Expectation("fluency", ">", 6.0), Expectation("locality", "<", 0.9)]).exit_code == 1
    assert run_gate(REPORT, [Expectation("locality", "<=", 0.91)]).exit_code == 0


def test_a_value_exactly_at_a_threshold_holds_for_the_inclusive_operators_only():
    """A boundary case: ``>= 0.91`` holds at 0.91, ``> 0.91`` does not (and ``<=`` / ``<`` alike)."""
    assert run_gate(REPORT, [Expectation("locality", ">=", 0.91)]).exit_code == 0
    assert run_gate(REPORT, (), {"locality": 0.91}).exit_code == 0  # --min-locality is >=
    assert run_gate(REPORT, [Expectation("locality", ">", 0.91)]).exit_code == 1
    assert run_gate(REPORT, [Expectation("locality", "<", 0.91)]).exit_code == 1
    assert Expectation("x", ">=", 0.5).holds(0.5) and not Expectation("x", ">=", 0.5).holds(0.4999)


def test_usage_errors():
    with pytest.raises(UsageError, match="unknown metric"):
        thresholds_from((), {"localty": 0.9})
    with pytest.raises(UsageError, match="unknown comparison"):
        thresholds_from([Expectation("locality", "==", 0.9)])
    with pytest.raises(UsageError, match="nothing to check"):
        run_gate(REPORT)


def _kvc(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture()
def report_file(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(REPORT.dumps())
    return str(path)


def test_cli_exit_0(report_file, capsys):
    code, out, _ = _kvc(["check", "--report", report_file, "--min-reliability", "0.9", "--min-locality", "0.9"], capsys)
    assert code == 0 and "all 2 thresholds hold" in out


def test_cli_exit_1_prints_what_fell_short(report_file, capsys):
    code, out, _ = _kvc(["check", "--report", report_file, "--min-locality", "0.95",
                         "--min", "reliability_cf=0.99"], capsys)
    assert code == 1
    assert "FAIL" in out and "locality" in out and "1 of 2 thresholds fell short" in out


def test_cli_reads_plan_expectations_and_json(report_file, tmp_path, capsys):
    plan = Plan(calls=(EditorCall("rome"),), expectations=(Expectation("locality", ">=", 0.95),))
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.dumps())
    code, out, _ = _kvc(["check", "--report", report_file, "--plan", str(plan_path), "--json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["exit_code"] == 1
    assert data["rows"][0] == {"metric": "locality", "ok": False, "op": ">=", "source": "spec",
                               "threshold": 0.95, "value": 0.91}


@pytest.mark.parametrize("argv, message", [
    (["--min-locality", "0.9"], "no kvc store"),
    (["--min", "locality"], "KEY=VALUE"),
    (["--min", "locality=high"], "not a number"),
    (["--min", "localty=0.9"], "unknown metric"),
    ([], "nothing to check"),
    (["--min-locality", "1.5"], "must be in [0, 1]"),  # as the spec's `expect locality >= 1.5` is refused
    (["--min", "reliability_cf=-0.1"], "must be in [0, 1]"),
    (["--min-fluency", "-1"], "must be >= 0"),
])
def test_cli_usage_errors_exit_2(report_file, capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no store here or above
    if argv != ["--min-locality", "0.9"]:
        argv = ["--report", report_file, *argv]
    code, _, err = _kvc(["check", *argv], capsys)
    assert code == 2 and message in err


def test_cli_bad_report_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 99}')
    code, _, err = _kvc(["check", "--report", str(bad), "--min-locality", "0.9"], capsys)
    assert code == 2 and "not an evaluation report" in err
