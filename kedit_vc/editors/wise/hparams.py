"""WISE's hyperparameters, checks and model-dependent defaults (no torch import).

Defaults follow the reference implementation (EasyEdit's wise, Llama-2-7B settings): the side
memory copies the MLP down-projection of a late block (block 27 of 32: 85% of the depth),
gradient mask ratio 0.2, 70 SGD steps at lr 1.0, margins α = 5 (irrelevant inputs below),
β = 20 (edit inputs above), γ = 10 (the gap between them), threshold ratio 0.88, an
element-wise norm constraint of 1.0 on ``W_side − W_main``, shards of 500 edits
(``save_freq``) merged two at a time (``merge_freq`` 1000) by TIES at density 0.53.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import depth_layer, hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch

#: Fraction of depth of the block whose MLP value matrix gets the side copy (EasyEdit: 27/32).
LAYER_FRACTION = 0.85
#: Generic texts the router learns to keep on the main memory. The reference draws one
#: unrelated input per edit from a pool disjoint from the evaluation (ZsRE: the train split's
#: NQ questions with their answers); each edit here takes ``irrelevant_per_edit`` of these in
#: turn, so successive edits see different ones. Hand-written: statements, questions and
#: facts of many relations, none of them a CounterFact or MQuAKE prompt.
IRRELEVANT = (
    "The weather was cold and the streets were quiet that morning.",
    "She poured a cup of tea and opened the newspaper.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "He practised the piano for an hour every evening.",
    "Who wrote the novel about the white whale? Herman Melville",
    "The train to the coast leaves from platform four at noon.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "How many legs does a spider have? Eight",
    "The committee will meet again next Tuesday to discuss the budget.",
    "Honey never spoils if it is kept in a sealed jar.",
    "The largest planet in the solar system is Jupiter",
    "They painted the kitchen a pale shade of yellow last spring.",
    "What is the chemical symbol for gold? Au",
    "The museum opens at nine and closes at five on weekdays.",
    "A triangle has three sides and three angles.",
    "The children built a sandcastle near the edge of the water.",
    "Which ocean lies between Africa and Australia? The Indian Ocean",
    "The recipe calls for two eggs, flour and a pinch of salt.",
    "Mount Everest is the highest mountain above sea level.",
    "He missed the bus and had to walk all the way to work.",
    "The speed of light in a vacuum is about three hundred thousand kilometres per second.",
    "In which year did the First World War end? 1918",
    "The library lends books, films and music to its members.",
    "Bees communicate the direction of flowers with a dance.",
)


@dataclass(frozen=True)
class WiseHparams:
    """WISE (Wang et al. 2024, arXiv 2405.14768): routed side memory at one layer, in knowledge
    shards TIES-merged on the paper's schedule."""

    layer: int | None = hparam(None, f"block whose MLP down-projection gets the side copy (None: "
                                     f"{LAYER_FRACTION:.0%} of the depth)")
    mask_ratio: float = hparam(0.2, "fraction of the side memory's entries the edits may train (the random "
                                    "gradient mask of the knowledge shard)")
    steps: int = hparam(70, "most SGD steps per edit")
    lr: float = hparam(1.0, "SGD learning rate of the side memory")
    alpha: float = hparam(5.0, "margin: irrelevant inputs' activation is pushed below alpha")
    beta: float = hparam(20.0, "margin: the edit's activation is pushed above beta")
    gamma: float = hparam(10.0, "margin: the edit's activation is pushed gamma above the irrelevant ones'")
    act_ratio: float = hparam(0.88, "the router's threshold is act_ratio times the least edit activation")
    norm_constraint: float = hparam(1.0, "|W_side - W_main| <= this, element-wise (0: no constraint)")
    early_stop: bool = hparam(True, "stop once every target token is the argmax and all three margins hold "
                                     "(the irrelevant activations below alpha, the edit's above beta and "
                                     "gamma over theirs)")
    seed: int = hparam(0, "seed of the gradient masks (each shard's drawn from it and the shard's number)")
    shard_size: int = hparam(500, "edits a knowledge shard takes before the next shard starts (the reference's "
                                  "save_freq)")
    shards_per_merge: int = hparam(2, "shards TIES-merged together into the side memory (merge_freq / save_freq)")
    density: float = hparam(0.53, "TIES trim: fraction of each shard's entries kept by magnitude")
    memory_weight: float = hparam(0.6, "weight of the memory merged so far when a later group's shards are "
                                       "merged into it (they share the rest)")
    irrelevant: tuple[str, ...] = hparam(IRRELEVANT, "pool of generic texts whose activation the router keeps "
                                                     "low; each edit takes irrelevant_per_edit of them in turn")
    irrelevant_per_edit: int = hparam(4, "generic texts from the pool each edit is trained against (the "
                                         "reference: one per edit; at most the pool's size)")
    replay: int = hparam(0, "memory replay (after the reference's Appendix B.3, positive part): each training "
                            "step also pushes this many earlier edits of the same shard, taken in turn, back up "
                            "to the activation they were recorded with (at least beta), so later edits do not "
                            "drag them under the router's threshold; with retrieve=true also the negative part: "
                            "one edit of every earlier merge group pushed under alpha on the shard in training "
                            "(0: off, the reference's default)")
    retrieve: bool = hparam(False, "WISE-Retrieve: each merge group stays a memory of its own (its shards TIES-merged "
                                   "among themselves) with its own threshold, and an input goes to the memory it "
                                   "activates most among those whose threshold it reaches (False: WISE-Merge, "
                                   "every group merged into one memory)")
    prefixes: int = hparam(0, "model-written context prefixes the edit is also trained on (the reference: 10, "
                              "half of 5 tokens and half of 10), so the memory activates and answers after "
                              "text too; each step then runs 1 + prefixes sequences (0: the bare prompt only; on "
                              "SmolLM2 dev records 10 lowered every figure at 2.7x the CPU)")
    neighbour_irrelevant: int = hparam(5, "of the request's declared neighbour probes (same relation, other "
                                          "subjects), this many (prompt and the answer they keep) are "
                                          "irrelevant inputs too (0: none)")


def check(hp: WiseHparams) -> list[str]:
    problems = layer_problems("layer", hp.layer)
    if not 0 < hp.mask_ratio <= 1:
        problems.append(f"mask_ratio must lie in (0, 1], got {hp.mask_ratio}")
    if not 0 < hp.act_ratio <= 1:
        problems.append(f"act_ratio must lie in (0, 1], got {hp.act_ratio}")
    if hp.shard_size < 1 or hp.shards_per_merge < 1:
        problems.append(f"shard_size and shards_per_merge must be >= 1, got {hp.shard_size} and "
                        f"{hp.shards_per_merge}")
    if not 0 < hp.density <= 1:
        problems.append(f"density must lie in (0, 1], got {hp.density}")
    if not 0 < hp.memory_weight < 1:
        problems.append(f"memory_weight must lie in (0, 1), got {hp.memory_weight}")
    if hp.irrelevant_per_edit < 1:
        problems.append(f"irrelevant_per_edit must be >= 1, got {hp.irrelevant_per_edit}")
    if hp.replay < 0:
        problems.append(f"replay must be >= 0, got {hp.replay}")
    if hp.prefixes < 0:
        problems.append(f"prefixes must be >= 0, got {hp.prefixes}")
    if hp.neighbour_irrelevant < 0:
        problems.append(f"neighbour_irrelevant must be >= 0, got {hp.neighbour_irrelevant}")
    if hp.steps < 1:
        problems.append(f"steps must be >= 1, got {hp.steps}")
    if not hp.lr > 0:
        problems.append(f"lr must be > 0, got {hp.lr}")
    for name in ("alpha", "beta", "gamma", "norm_constraint"):
        if getattr(hp, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(hp, name)}")
    if not hp.irrelevant or not all(isinstance(t, str) and t.strip() for t in hp.irrelevant):
        problems.append("irrelevant must list at least one non-empty text")
    return problems


def resolve(model: torch.nn.Module, hp: WiseHparams) -> WiseHparams:
    """``hp`` with the layer this model gets by default."""
    return with_model_defaults(model, hp, layer=lambda: depth_layer(model, LAYER_FRACTION))
