"""What an edit did to the subject: logit lens and SelfIE readouts, before and after.

``explain_edit`` reads the model as given ("before"), adds the delta, reads again
("after"), and puts the touched weights back bit for bit (copies, not ``W + d - d``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from kedit_vc.models.families import family_of, num_layers

from .defaults import MAX_NEW_TOKENS
from .lens import LensResult, logit_lens
from .readout import SelfieResult, selfie
from .tokens import template_of

if TYPE_CHECKING:
    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.delta import Delta


@dataclass(frozen=True)
class Reading:
    """One side of the comparison: lens at the subject's last token and at the prompt's
    last token, and the SelfIE readout of the subject's state."""

    lens_subject: LensResult
    lens_last: LensResult
    selfie: SelfieResult

    def to_json(self) -> dict[str, Any]:
        return {"lens_subject": self.lens_subject.to_json(), "lens_last": self.lens_last.to_json(),
                "selfie": self.selfie.to_json()}


@dataclass(frozen=True)
class Explanation:
    """Before/after readings of one edit request; ``edited_layers`` from the delta's names."""

    edit_id: str
    subject: str
    prompt: str
    target_new: str
    target_true: str | None
    edited_layers: tuple[int, ...]
    selfie_layer: int
    before: Reading
    after: Reading

    def rank_gain(self, target: str, position: str = "subject") -> tuple[int, ...]:
        """Per layer: how many places ``target`` rose (positive = better after the edit)."""
        pick = (lambda r: r.lens_subject) if position == "subject" else (lambda r: r.lens_last)
        return tuple(b - a for b, a in zip(pick(self.before).ranks[target], pick(self.after).ranks[target]))

    def to_json(self) -> dict[str, Any]:
        return {"edit_id": self.edit_id, "subject": self.subject, "prompt": self.prompt,
                "target_new": self.target_new, "target_true": self.target_true,
                "edited_layers": list(self.edited_layers), "selfie_layer": self.selfie_layer,
                "before": self.before.to_json(), "after": self.after.to_json()}


def edited_layers(model: torch.nn.Module, delta: "Delta") -> tuple[int, ...]:
    """Block indices whose weights ``delta`` changes, e.g. (4,) for a ROME edit at layer 4."""
    pattern = re.compile(rf"^{re.escape(family_of(model).blocks)}\.(\d+)\.")
    return tuple(sorted({int(m.group(1)) for name in delta.updates if (m := pattern.match(name))}))


def default_selfie_layer(n_layers: int, edited: tuple[int, ...]) -> int:
    """A few layers above the last edited one (an eighth of the depth, 3 of SmolLM2's 30).

    The edited block's output is the first state an edit changes, but readouts taken
    right there are often generic; a few blocks later the model has built on the
    changed state (SmolLM2: "Colosseum" reads as itself from layer ~6, not at 4).
    Without edited blocks: a quarter of the depth.
    """
    if not edited:
        return n_layers // 4
    return min(n_layers - 1, edited[-1] + max(1, n_layers // 8))


class applied:
    """Context manager: ``delta`` added to ``model`` inside; the exact old weights restored after."""

    def __init__(self, model: torch.nn.Module, delta: "Delta") -> None:
        self.model, self.delta = model, delta
        self.saved: dict[str, torch.Tensor] = {}

    def __enter__(self) -> None:
        self.saved = {n: self.model.get_parameter(n).detach().clone() for n in self.delta.updates}
        self.delta.apply(self.model)

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for name, value in self.saved.items():
                self.model.get_parameter(name).copy_(value)


def _read(model: torch.nn.Module, tokenizer: Any, request: "EditRequest", targets: list[str],
          layer: int, top_k: int, max_new_tokens: int) -> Reading:
    return Reading(
        lens_subject=logit_lens(model, tokenizer, request.prompt, request.subject, targets, top_k=top_k),
        lens_last=logit_lens(model, tokenizer, request.prompt, request.subject, targets,
                             position="last", top_k=top_k),
        selfie=selfie(model, tokenizer, request.prompt, request.subject, layer, max_new_tokens=max_new_tokens),
    )


def explain_edit(model: torch.nn.Module, tokenizer: Any, request: "EditRequest", delta: "Delta", *,
                 selfie_layer: int | None = None, top_k: int = 5,
                 max_new_tokens: int = MAX_NEW_TOKENS) -> Explanation:
    """Before/after logit lens and SelfIE readout for ``request`` under ``delta``.

    The SelfIE layer defaults to ``default_selfie_layer``. The model's weights are
    unchanged on return.
    """
    layers = edited_layers(model, delta)
    layer = selfie_layer if selfie_layer is not None else default_selfie_layer(num_layers(model), layers)
    targets = [request.target_new] + ([request.target_true] if request.target_true else [])
    before = _read(model, tokenizer, request, targets, layer, top_k, max_new_tokens)
    with applied(model, delta):
        after = _read(model, tokenizer, request, targets, layer, top_k, max_new_tokens)
    return Explanation(
        edit_id=request.edit_id, subject=request.subject,
        prompt=template_of(request.prompt, request.subject).replace("{}", request.subject, 1),
        target_new=request.target_new, target_true=request.target_true, edited_layers=layers,
        selfie_layer=layer, before=before, after=after,
    )

