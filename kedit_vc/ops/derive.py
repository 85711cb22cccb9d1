"""The model side of derivation: ask the model before the edit what it knows.

``kedit_vc.compiler.derive`` decides what to derive and stays torch-free; this module
gives it an ``Oracle`` backed by a loaded model. Prompts get the shared prefix token
(``kedit_vc.models.prompting``), exactly as editors and evaluation see them.
In ``kvc commit`` the model is the unedited base (``ops/commit.compile_for``), so a plan
depends only on the spec and the base model and a resumed ``--batch-size`` run derives
exactly what the first run did; facts changed by earlier commits are not consulted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from kedit_vc.compiler import derive, should_derive
from kedit_vc.compiler.derive import Answer, phrase
from kedit_vc.compiler.lower import lower
from kedit_vc.compiler.plan import Plan
from kedit_vc.lang import load

if TYPE_CHECKING:
    import torch

#: New tokens of a greedy answer: enough for "the United States", short enough to stay cheap.
ANSWER_TOKENS = 6


class ModelOracle:
    """Greedy short answers from ``model`` and the probability of each first answer token."""

    def __init__(self, model: "torch.nn.Module", tokenizer: Any, max_new_tokens: int = ANSWER_TOKENS) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    def answers(self, prompts: Sequence[str]) -> list[Answer]:
        import torch

        from kedit_vc.models.prompting import encode_text

        out = []
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for prompt in prompts:
                    ids = torch.tensor([encode_text(self.tokenizer, prompt)], device=device)  # [1, t]
                    new: list[int] = []
                    first = 0.0
                    for step in range(self.max_new_tokens):
                        logits = self.model(input_ids=ids).logits[0, -1].float()  # [vocab]
                        token = int(logits.argmax())
                        if step == 0:
                            first = float(torch.softmax(logits, -1)[token])
                        if token == self.tokenizer.eos_token_id:
                            break
                        new.append(token)
                        if "\n" in self.tokenizer.decode([token]):
                            break
                        ids = torch.cat([ids, torch.tensor([[token]], device=device)], 1)
                    out.append(Answer(phrase(self.tokenizer.decode(new, skip_special_tokens=True)), first))
        finally:
            self.model.train(was_training)
        return out


def derived_plan(spec: str | Path, model: "torch.nn.Module | None", tokenizer: Any = None,
                 choice: bool | None = None) -> Plan:
    """``spec``'s plan, with derived edits when ``should_derive`` says so (``model`` answers)."""
    program = load(spec)
    plan = lower(program)
    if not should_derive(program, choice):
        return plan
    oracle = ModelOracle(model, tokenizer) if model is not None else None
    return derive(program, plan, oracle)


__all__ = ["ANSWER_TOKENS", "ModelOracle", "derived_plan"]
