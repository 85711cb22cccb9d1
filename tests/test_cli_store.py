"""End-to-end CLI scenarios for the store's verbs on a tiny random Llama (CliRunner).

The tiny model learns little in three optimisation steps, so these tests check what the
commands do to the store and what they print, not that an edit takes (the SmolLM2 test
does that).
"""

from __future__ import annotations

import json

import pytest

from conftest import TINY_ROME, run_kvc, write_spec

EIFFEL = '''edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome" {
    paraphrase "Tourists travel to see the {subject} in the city of"
    neighbour "Louvre" => "Paris"
}'''
FRANCE = '''edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid" {
    neighbour "Germany" => "Berlin"
}'''
TOKYO = '''edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China" {
    neighbour "Seoul" => "Korea"
}'''
EIFFEL_BERLIN = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Berlin"'


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    text = result.stderr.strip()
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.fixture()
def store_dir(project, tiny_model_dir):
    ok(run_kvc("init", "--model", str(tiny_model_dir)))
    return project


def head(project) -> str:
    from kedit_vc.store import open_store

    with open_store(project) as store:
        return store.head()


def commit(project, name, body, *args):
    return ok(run_kvc("commit", str(write_spec(project, name, body)), "--no-progress", *args))


def test_init_status_and_errors(store_dir, tiny_model_dir):
    out = ok(run_kvc("status"))
    assert "0 commit(s)" in out and str(tiny_model_dir) in out
    one_line_error(run_kvc("init", "--model", str(tiny_model_dir)), 1, "already exists")
    one_line_error(run_kvc("init", "elsewhere", "--model", "no-such-model"), 1, "unknown model 'no-such-model'")
    info = json.loads(ok(run_kvc("status", "--json")))
    assert info["live_edits"] == 0 and info["base_fingerprint"].startswith("sha256:")


def test_commands_outside_a_store_say_so(project):
    for args in (["status"], ["log"], ["commit", str(write_spec(project, "a.kedit", EIFFEL))], ["fsck"]):
        one_line_error(run_kvc(*args), 1, "no kvc store", "kvc init")


def test_commit_log_show_diff(store_dir):
    out = commit(store_dir, "a.kedit", EIFFEL, "-m", "first fact")
    assert "1 edit(s) with rome" in out and "reliability" in out and "delta: 1 tensor(s)" in out
    commit(store_dir, "b.kedit", FRANCE)
    log = ok(run_kvc("log", "--oneline", "--metrics"))
    lines = log.splitlines()
    assert len(lines) == 3 and "first fact" in lines[1] and "b.kedit: France: Paris -> Madrid" in lines[0]
    assert "loc" in lines[1] and "live" in lines[0]
    full = ok(run_kvc("log", "-n", "1"))
    assert full.count("commit ") == 1 and "edits:" in full
    shown = ok(run_kvc("show", "HEAD~1"))
    for fragment in ("spec", '"Eiffel Tower"', "plan", "model.layers.1.mlp.down_proj.weight", "lowrank", "metrics"):
        assert fragment in shown
    data = json.loads(ok(run_kvc("show", "HEAD", "--json")))
    assert data["delta"]["tensors"][0]["rank"] == 1
    manifest = data["manifest"]
    assert manifest["keys"] == {"layers": [1]} and manifest["method"] == "rome"
    assert set(manifest["extra"]["efficiency"]) == {"seconds", "peak_rss_bytes", "delta_bytes"}
    assert {"load_s", "edit_s", "before_s", "after_s", "total_s"} <= set(manifest["timings"])
    diff = ok(run_kvc("diff", "HEAD~1", "HEAD"))
    assert "+ e-" in diff and "France" in diff and "rank" in diff
    evaluated = ok(run_kvc("diff", "HEAD~2", "HEAD", "--eval", "--no-progress"))
    # the Eiffel edit moves its rewrite prompt's prediction on the tiny model: a real change, listed
    assert "1 probe prediction(s) differ" in evaluated, evaluated
    assert "rewrite    'The Eiffel Tower is located in the city of'" in evaluated
    assert json.loads(ok(run_kvc("diff", "HEAD", "HEAD", "--json")))["delta"] is None


def test_contradicting_edit_is_refused_unless_superseded(store_dir):
    commit(store_dir, "a.kedit", EIFFEL)
    before = head(store_dir)
    spec = write_spec(store_dir, "c.kedit", EIFFEL_BERLIN)
    one_line_error(run_kvc("commit", str(spec), "--no-progress"), 1, "contradicts live edit", "--supersede")
    assert head(store_dir) == before
    out = ok(run_kvc("commit", str(spec), "--supersede", "--no-progress"))
    assert "supersedes e-" in out
    status = json.loads(ok(run_kvc("status", "--json")))
    assert status["live_commits"] == 2 and status["live_edits"] == 1


def test_gate_refuses_and_writes_nothing(store_dir):
    before = head(store_dir)
    spec = str(write_spec(store_dir, "a.kedit", EIFFEL))
    one_line_error(run_kvc("commit", spec, "--gate", "--min-reliability", "1.5"), 2, "must be in [0, 1]")
    # three ROME steps do not make the tiny model say "Rome": reliability 0 < 1
    result = run_kvc("commit", spec, "--gate", "--min-reliability", "1.0", "--no-progress")
    assert result.exit_code == 1
    assert "commit refused, nothing written" in result.stderr and "FAIL" in result.stderr
    assert "reliability" in result.stdout  # the metrics table that justified it
    assert head(store_dir) == before
    spec = write_spec(store_dir, "x.kedit", "expect reliability >= 0.99\n" + EIFFEL)
    refused = run_kvc("commit", str(spec), "--no-progress")
    assert refused.exit_code == 1 and "spec" in refused.stderr
    assert head(store_dir) == before
    ok(run_kvc("fsck", "--skip-model"))


@pytest.mark.parametrize("args, code, fragment", [
    (["commit", "missing.kedit"], 2, "does not exist"),
    (["commit", "a.kedit", "--method", "nosuch"], 2, "method 'nosuch'"),
    (["commit", "a.kedit", "--hparam", "nosuch=1"], 2, "--hparam"),
    (["commit", "a.kedit", "--hparam", "novalue"], 2, "KEY=VALUE"),
    (["commit", "a.kedit", "--min", "nosuch=0.5"], 2, "unknown metric 'nosuch'"),
    (["show", "nosuch"], 1, "unknown revision 'nosuch'"),
    (["revert", "HEAD"], 2, "initial commit"),
    (["squash", "HEAD"], 2, "A..B"),
    (["squash", "HEAD..HEAD"], 2, "ancestor"),
    (["diff", "HEAD", "nosuch"], 1, "unknown revision"),
    (["eval", "--plot", "x.png"], 2, "--history"),
    (["check"], 2, "nothing to check"),
])
def test_usage_errors_are_one_line(store_dir, args, code, fragment):
    write_spec(store_dir, "a.kedit", EIFFEL)
    result = run_kvc(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and fragment in result.output


def test_spec_errors_and_model_mismatch(store_dir):
    bad = store_dir / "bad.kedit"
    bad.write_text('edit "X" prompt "no placeholder": "a" -> "b"\n')
    result = run_kvc("commit", str(bad))
    assert result.exit_code == 2 and "bad.kedit:1:" in result.output and "Traceback" not in result.output
    other = write_spec(store_dir, "other.kedit", 'model "smollm2"\n' + EIFFEL)
    one_line_error(run_kvc("commit", str(other)), 2, "written for model 'smollm2'")
    empty = write_spec(store_dir, "empty.kedit", "")
    one_line_error(run_kvc("commit", str(empty)), 2, "has no edits to commit")


def test_revert_reports_and_restores(store_dir):
    commit(store_dir, "a.kedit", EIFFEL)
    commit(store_dir, "b.kedit", FRANCE)
    commit(store_dir, "c.kedit", TOKYO)
    # the Eiffel edit moved its rewrite prompt's prediction, so "back to the base model's" is news
    changed = ok(run_kvc("diff", "HEAD~3", "HEAD~2", "--eval", "--no-progress"))
    assert "rewrite    'The Eiffel Tower is located in the city of'" in changed, changed
    out = ok(run_kvc("revert", "HEAD~2", "--no-progress"))
    assert "Eiffel Tower: Rome undone; rewrite prompt back to the base model's prediction" in out
    assert "edits still live" in out
    undone = ok(run_kvc("diff", "HEAD~1", "HEAD", "--eval", "--no-progress"))  # the revert commit itself
    assert "rewrite    'The Eiffel Tower is located in the city of': 'Gates' -> 'w79'" in undone, undone
    log = ok(run_kvc("log", "--oneline")).splitlines()
    assert "revert" in log[0] and "Revert" in log[0]
    assert log[3].split()[1:3] == ["edit", "a.kedit:"]  # the Eiffel commit is no longer live
    assert log[2].split()[1:3] == ["edit", "live"]  # France's still is
    data = json.loads(ok(run_kvc("revert", "HEAD", "--json", "--no-progress")))  # revert the revert
    assert data["reverts"] and json.loads(ok(run_kvc("status", "--json")))["live_edits"] == 3
    ok(run_kvc("fsck", "--skip-model"))


def test_squash_keeps_history_reachable(store_dir):
    commit(store_dir, "a.kedit", EIFFEL)
    commit(store_dir, "b.kedit", FRANCE)
    commit(store_dir, "c.kedit", TOKYO)
    old = head(store_dir)
    out = ok(run_kvc("squash", "HEAD~3..HEAD~1", "--hparam", "layers=[1,2]", "--hparam", "v_steps=3",
                     "--hparam", "stats_tokens=2000", "--hparam", "context_templates=2", "--no-progress"))
    assert "squashed 2 commit(s), 2 edit(s)" in out and "before" in out and "after" in out
    log = ok(run_kvc("log", "--oneline")).splitlines()
    assert len(log) == 3 and "squash" in log[1] and "c.kedit" in log[0]
    from kedit_vc.store import open_store

    with open_store(store_dir) as store:
        assert list(store.squashed_refs().values()) == [old]
        assert store.read_commit("HEAD~1").method == "memit"
    ok(run_kvc("fsck", "--skip-model"))
    shown = json.loads(ok(run_kvc("show", "HEAD~1", "--json")))
    assert shown["delta"]["tensors"][0]["name"] == "model.layers.1.mlp.down_proj.weight"
    assert "before" in shown["metrics"]


def test_eval_history_plot_and_check(store_dir):
    commit(store_dir, "a.kedit", EIFFEL)
    commit(store_dir, "b.kedit", FRANCE)
    report = json.loads(ok(run_kvc("eval", "--json", "--no-progress")))
    assert report["n_edits"] == 2 and "locality" in report["metrics"]
    table = ok(run_kvc("eval", "HEAD~1", "--no-progress"))
    assert "1 live edit(s)" in table
    history = ok(run_kvc("eval", "--history", "--plot", "curve.png", "--no-progress"))
    assert len(history.strip().splitlines()) >= 3 and (store_dir / "curve.png").stat().st_size > 1000
    assert ok(run_kvc("check", "--min-locality", "0")).strip().endswith("all 1 thresholds hold")
    failed = run_kvc("check", "--min-reliability", "1.0")
    assert failed.exit_code == 1 and "FAIL" in failed.output
    one_line_error(run_kvc("check", "--min-reliability", "1.5"), 2, "must be in [0, 1]")
    spec_eval = json.loads(ok(run_kvc("eval", "--spec", str(store_dir / "a.kedit"), "--json")))
    assert spec_eval["n_edits"] == 1
    (store_dir / "report.json").write_text(json.dumps(report))
    ok(run_kvc("check", "--report", "report.json", "--min-locality", "0"))


def test_writer_lock_refuses_a_second_writer(store_dir):
    from kedit_vc.store import open_store

    spec = write_spec(store_dir, "a.kedit", EIFFEL)
    with open_store(store_dir) as store, store.lock():
        one_line_error(run_kvc("commit", str(spec), "--no-progress"), 1, "being written by", "--wait")
        one_line_error(run_kvc("revert", "HEAD"), 1, "being written by")


def test_ctrl_c_during_the_edit_leaves_the_store_as_it_was(store_dir, monkeypatch):
    commit(store_dir, "a.kedit", EIFFEL)
    before = head(store_dir)
    from kedit_vc.editors.rome.algorithm import RomeEditor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RomeEditor, "edit", interrupted)
    result = run_kvc("commit", str(write_spec(store_dir, "b.kedit", FRANCE)), "--no-progress")
    assert result.exit_code == 130 and "aborted" in result.output
    assert head(store_dir) == before
    assert ok(run_kvc("fsck", "--skip-model")).startswith("ok")


def test_fsck_checks_the_base_model(store_dir, tiny_model_dir, tmp_path):
    commit(store_dir, "a.kedit", EIFFEL)
    assert "fingerprint matches" in ok(run_kvc("fsck"))
    from conftest import save_tiny_llama
    import shutil

    other = save_tiny_llama(tmp_path / "other", seed=1)
    backup = tmp_path / "backup"
    shutil.copytree(tiny_model_dir, backup)
    try:
        for f in other.glob("*.safetensors"):
            shutil.copy(f, tiny_model_dir / f.name)
        result = run_kvc("fsck")
        assert result.exit_code == 1 and "base model: this store was made for model" in result.output
    finally:
        shutil.rmtree(tiny_model_dir)
        shutil.copytree(backup, tiny_model_dir)
