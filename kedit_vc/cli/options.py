"""Reusable click options: the same flag means the same thing on every command."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable

import click

from kedit_vc.errors import UsageError
from kedit_vc.eval.registry import GENERATIVE, HEADLINES, RAW

F = Callable[..., Any]

wait_option = click.option("--wait", is_flag=True, help="If another kvc process is writing the store, wait for it.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
message_option = click.option("-m", "--message", default=None, help="Commit message (default: a summary).")
eval_batch_option = click.option("--eval-batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                                 help="Probes scored per forward pass.")
hparam_option = click.option("--hparam", "hparams", multiple=True, metavar="KEY=VALUE",
                             help="Override a hyperparameter (JSON value), e.g. --hparam v_steps=20.")


#: The model a command loads when none is named.
DEFAULT_MODEL = "smollm2"
MODEL_HELP = "Embedded alias (smollm2, gemma3-270m), HuggingFace folder, or .gguf file."


def model_option(default: str | None = DEFAULT_MODEL, lead: str = "") -> Callable[[F], F]:
    """``--model REF`` (into ``model_ref``): ``lead`` says what the model is for, then what REF may be."""
    return click.option("--model", "model_ref", default=default, show_default=default is not None,
                        help=f"{lead} {MODEL_HELP}".strip())


def progress_option(f: F) -> F:
    return click.option("--progress/--no-progress", default=None,
                        help="Show progress bars (default: when stderr is a terminal).")(f)


def resolve_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


#: Metrics with their own ``--min-NAME`` flag (``_`` written ``-``); any other: ``--min METRIC=X``.
THRESHOLD_METRICS = (*HEADLINES, "fluency", *GENERATIVE, RAW + "reliability")


def threshold_options(f: F) -> F:
    """``--min-reliability X`` ... and ``--min METRIC=X``: thresholds the gate checks."""
    for name in reversed(THRESHOLD_METRICS):
        f = click.option(f"--min-{name.replace('_', '-')}", f"min_{name}", type=float, default=None,
                         help=f"{name} >= X")(f)
    return click.option("--min", "minimums", multiple=True, metavar="METRIC=X",
                        help="Any metric, e.g. --min locality_cf=0.9")(f)


def parse_pairs(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def parse_hparams(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--hparam`` values as JSON where they parse (numbers, lists), else strings."""
    out: dict[str, Any] = {}
    for key, text in parse_pairs(pairs, "--hparam").items():
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


#: Suffixes of benchmark metric names that are rates (``reliability_cf``, ``locality_agree``...).
_RATE_SUFFIXES = ("_cf", "_acc", "_agree", "_multihop", "cf_score")


def _threshold_bounds(metric: str) -> tuple[float, float]:
    """The range a threshold on ``metric`` must lie in, as a spec's ``expect`` checks it (unbounded if unknown)."""
    from kedit_vc.lang.metrics import METRICS

    if metric in METRICS:
        return METRICS[metric]
    if metric.endswith(_RATE_SUFFIXES):
        return (0.0, 1.0)
    return (-math.inf, math.inf)


def _check_threshold(flag: str, metric: str, value: float) -> None:
    low, high = _threshold_bounds(metric)
    if not math.isfinite(value) or not low <= value <= high:
        bounds = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise UsageError(f"{flag} {value:g}: a threshold for {metric} must be {bounds}")


def collect_minimums(kwargs: dict[str, Any]) -> dict[str, float]:
    """Pop the threshold options out of a command's kwargs into {metric: minimum}.

    A threshold outside its metric's range (``--min-locality 1.5``) is a usage error, as
    the same threshold in a spec's ``expect`` line is.
    """
    out = {}
    for name in THRESHOLD_METRICS:
        value = kwargs.pop(f"min_{name}", None)
        if value is not None:
            _check_threshold(f"--min-{name.replace('_', '-')}", name, value)
            out[name] = value
    for key, text in parse_pairs(kwargs.pop("minimums", ()), "--min").items():
        try:
            out[key] = float(text)
        except ValueError:
            raise UsageError(f"--min {key}: {text!r} is not a number") from None
        _check_threshold("--min", key, out[key])
    return out



class _MethodOption(click.Option):
    """``--method``: its help lists the registered methods, read only when help is shown."""

    def __init__(self, *args: Any, lead: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lead = lead

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from kedit_vc.editors.registry import method_summaries

        self.help = f"{self.lead} Methods: {method_summaries()}."
        return super().get_help_record(ctx)


def _known_method(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from kedit_vc.editors.registry import require_method

    return None if value is None else require_method(value).name


def method_option(default: str | None, lead: str) -> Callable[[F], F]:
    """``--method NAME``, checked against the registry (one line with a did-you-mean)."""
    return click.option("--method", default=default, show_default=default is not None, cls=_MethodOption,
                        lead=lead, callback=_known_method, help=lead)


def echo_before_after(before: Any, after: Any, left: str = "before", right: str = "after") -> None:
    """The headline metrics of two reports side by side (squash, merge, cherry-pick)."""
    names = [n for n in HEADLINES if n in before.metrics or n in after.metrics]
    click.echo(f"{'metric':<16} {left:>9} {right:>9}")
    for name in names:
        b, a = before.metrics.get(name), after.metrics.get(name)
        click.echo(f"{name:<16} {'-' if b is None else f'{b:.4f}':>9} {'-' if a is None else f'{a:.4f}':>9}")


def echo_losses(losses: Any) -> None:
    """The checks that held before a re-solve and fail after it, one row each."""
    if not losses:
        return
    click.echo(f"{len(losses)} check(s) that held before fail after:")
    click.echo(f"  {'edit':<16} {'subject':<24} {'new object':<16} check")
    for loss in losses:
        click.echo(f"  {loss.edit_id:<16} {loss.subject[:24]:<24} {loss.target[:16]:<16} {loss.check}")



#: Commands that load a model, so take ``--device/--dtype/--device-map`` (names as ``kvc`` spells them).
MODEL_COMMANDS = ("model info", "model generate", "compile", "init", "commit", "diff", "revert", "squash",
                  "export", "fsck", "bench", "eval", "check", "trace", "explain", "bisect", "blame", "merge",
                  "cherry-pick", "ask", "train mend", "train ke", "train serac")


def _placement_callback(kind: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        from kedit_vc.models import placement

        flag = param.opts[0]
        parse = {"device": placement.parse_device, "dtype": placement.parse_dtype,
                 "device_map": placement.parse_device_map}[kind]
        parsed = parse(value, flag)   # UsageError naming the flag: one line, exit 2
        if parsed is not None:
            setting: dict[str, Any] = {kind: parsed}
            placement.set_default(placement.Placement(**setting))
    return callback


def placement_params() -> list[click.Option]:
    """``--device``, ``--dtype``, ``--device-map``: checked at parse time, then the default of every
    ``load_model`` in the command (they change no signature: ``expose_value=False``)."""
    return [
        click.Option(["--device"], default=None, expose_value=False, is_eager=True, metavar="DEVICE",
                     callback=_placement_callback("device"),
                     help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps [env KVC_DEVICE]."),
        click.Option(["--dtype"], default=None, expose_value=False, is_eager=True, metavar="DTYPE",
                     callback=_placement_callback("dtype"),
                     help="float32 (default), bfloat16 or float16 weights; solves stay float64 [env KVC_DTYPE]."),
        click.Option(["--device-map"], default=None, expose_value=False, is_eager=True, metavar="MAP",
                     callback=_placement_callback("device_map"),
                     help="auto, balanced or sequential: split a model larger than one device "
                          "(accelerate) [env KVC_DEVICE_MAP]."),
    ]


def add_placement_options(group: click.Group, names: tuple[str, ...] = MODEL_COMMANDS) -> None:
    """Give each model-loading command of ``group`` (``"model info"``: a subcommand) the placement flags."""
    for name in names:
        command: Any = group
        for part in name.split():
            command = command.commands.get(part) if isinstance(command, click.Group) else None
        if command is not None and not any(p.name == "device" for p in command.params):
            command.params.extend(placement_params())
