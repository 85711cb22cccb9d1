"""Operations that compose the compiler, the editors, the store and evaluation.

One module per verb; each is a plain function the CLI calls (and any Python user can):

    store = init(".", "smollm2")
    result = commit_spec(store, "specs/demo.kedit", CommitOptions(gate=True))
    revert(store, "HEAD~1"); squash(store, "HEAD~2..HEAD")
    Evaluator(store).evaluate("HEAD").report.table()
    export(store, "HEAD", "out/", "peft")
    explain_revision(store, "HEAD", load_base(store))          # lens + SelfIE before/after
    run_bench(model, tokenizer, "counterfact", cases, get_editor("rome"), hparams).summary()

An editor knows nothing of history and the store nothing of editing methods: this
package is the one place that knows both. Evaluation only scores and interpretation
only reads models; running editors for a benchmark or an explanation happens here.
"""

from .bench import run_bench
from .commit import CommitOptions, CommitResult, commit_spec
from .errors import CommitRefused, ConflictError
from .evaluate import Evaluation, Evaluator, evaluate_history
from .explain import explain_plan, explain_revision
from .export import export
from .history import LiveEdit, live_edits
from .init import init
from .inspect import diff, show, status
from .load import load_edited
from .revert import RevertResult, revert
from .squash import SquashResult, squash

__all__ = [
    "CommitOptions", "CommitRefused", "CommitResult", "ConflictError", "Evaluation", "Evaluator", "LiveEdit",
    "RevertResult", "SquashResult", "commit_spec", "diff", "evaluate_history", "explain_plan", "explain_revision",
    "export", "init", "live_edits", "load_edited", "revert", "run_bench", "show", "squash", "status",
]
