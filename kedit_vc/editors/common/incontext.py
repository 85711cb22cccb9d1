"""Shared by the in-context methods (IKE, MemPrompt): a request as an edit-memory fact.

Editing is cheap: the fact is written down (text and token ids, see
``kedit_vc.patches.memory.core``) and the weights are left alone; the cost moves to query
time, where the attached memory chooses and prepends a context.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.models.prompting import encode_continuation, encode_text, prefix_ids
from kedit_vc.patches.memory.core import Demo, MemoryFact, MemoryPatch

#: IKE's demonstration format (arXiv 2305.12740, as EasyEdit writes it).
DEMO = "New Fact: {fact}\nPrompt: {prompt} {answer}\n\n"
#: What goes right before the caller's prompt: the fact it is asked about.
HEAD = "New Fact: {fact}\nPrompt:"


def subject_end(tokenizer: Any, request: EditRequest) -> int:
    """Index, in the encoded rewrite prompt, of the subject's last token."""
    before = request.prompt.split("{}", 1)[0] + request.subject
    full = encode_text(tokenizer, request.rewrite_prompt)
    return max(0, min(len(encode_text(tokenizer, before)) - 1, len(full) - 1))


def memory_fact(tokenizer: Any, request: EditRequest, update_demos: int = 0, retain_demos: int = 0) -> MemoryFact:
    """The fact ``request`` writes, with IKE's copy demonstration and up to ``update_demos``
    update (its paraphrase probes) and ``retain_demos`` retain (its neighbourhood probes,
    with their expected answers) demonstrations."""
    prompt = request.rewrite_prompt
    fact = f"{prompt} {request.target_new}"
    texts = [("copy", DEMO.format(fact=fact, prompt=prompt, answer=request.target_new))]
    texts += [("update", DEMO.format(fact=fact, prompt=p.prompt, answer=request.target_new))
              for p in request.probes if p.kind == "paraphrase"][:update_demos]
    texts += [("retain", DEMO.format(fact=fact, prompt=p.prompt, answer=p.target))
              for p in request.probes if p.kind == "neighbour"][:retain_demos]
    head = HEAD.format(fact=fact)
    return MemoryFact(
        id=request.edit_id, subject=request.subject, relation=request.prompt, prompt=prompt,
        target_new=request.target_new, target_true=request.target_true,
        key_ids=tuple(encode_text(tokenizer, prompt)), subject_end=subject_end(tokenizer, request),
        head_text=head, head_ids=tuple(encode_continuation(tokenizer, head)),
        demos=tuple(Demo(kind, text, tuple(encode_continuation(tokenizer, text))) for kind, text in texts))


def memory_result(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], method: str,
                  settings: Mapping[str, Any], context: EditContext, update_demos: int = 0,
                  retain_demos: int = 0) -> EditResult:
    """The ``EditResult`` of an in-context method: an empty delta and one memory patch."""
    started = time.perf_counter()
    facts = tuple(memory_fact(tokenizer, r, update_demos, retain_demos) for r in requests)
    embeddings: Any = getattr(model, "get_input_embeddings")()  # noqa: B009 - HF method, typed loosely by torch
    vocab = int(embeddings.weight.shape[0])
    patch = MemoryPatch(facts=facts, settings=dict(settings), lead_ids=tuple(prefix_ids(tokenizer)),
                        vocab_size=vocab, meta={"method": method})
    info = {"facts_added": len(facts), "demonstrations": sum(len(f.demos) for f in facts),
            "seconds": round(time.perf_counter() - started, 4)}
    return EditResult(delta=Delta({}, {"method": method}), info=info, fingerprint=base_fingerprint(model, context),
                      patches=(patch,))
