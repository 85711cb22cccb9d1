"""WISE's router training: what the edit is trained against and when training stops.

Each edit is trained against irrelevant inputs: the request's declared neighbour probes
first, then generic texts drawn in turn from a pool, a different few for each edit of the
memory (the reference draws one unrelated input per edit). Training stops early only once
the paper's margin loss is spent: all three margins, α included (the early stop once ignored
α, and the irrelevant texts stayed above the threshold). On the tiny model: after a commit
every irrelevant input the edit was trained against stays under the router's threshold while
the edit's prompt is over it, and the threshold is ``act_ratio`` times the least recorded
activation of the live edits, commit after commit.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_cli_store import EIFFEL, TOKYO
from test_patches import commit, load
from test_wise import TINY_WISE


def _hp(**overrides):
    from kedit_vc.editors.registry import build_hparams

    return build_hparams("wise", overrides)


def _request(neighbours: int):
    from kedit_vc.compiler.plan import EditRequest, Probe

    probes = (Probe("paraphrase", "Where is the Tower? In", "Rome"),) + tuple(
        Probe("neighbour", f"Neighbour {i} is in", f"City{i}") for i in range(neighbours))
    return EditRequest("e", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris", probes)


# -- the margins and the early stop ---------------------------------------------------------

quarters = st.integers(-200, 200).map(lambda n: n / 4)   # exact in float32: no rounding at the margins


@settings(max_examples=200, deadline=None)
@given(edit=quarters, irrelevant=st.lists(quarters, min_size=1, max_size=5),
       alpha=st.integers(0, 40).map(lambda n: n / 4), beta=st.integers(0, 80).map(lambda n: n / 4),
       gamma=st.integers(0, 40).map(lambda n: n / 4))
def test_training_stops_on_the_margins_exactly_where_the_margin_loss_is_spent(edit, irrelevant, alpha, beta, gamma):
    from kedit_vc.editors.wise.algorithm import margin_loss, separated

    hp = _hp(alpha=alpha, beta=beta, gamma=gamma)
    edit_act, irr_act = torch.tensor(edit), torch.tensor(irrelevant)
    assert separated(edit_act, irr_act, hp) == (float(margin_loss(edit_act, irr_act, hp)) == 0.0)


def test_the_early_stop_needs_the_irrelevant_inputs_under_alpha_too():
    from kedit_vc.editors.wise.algorithm import separated

    hp = _hp(alpha=5.0, beta=20.0, gamma=10.0)
    # β and γ hold (35 >= 20, 35 >= 24 + 10), α does not (24 > 5): training goes on.
    assert not separated(torch.tensor(35.0), torch.tensor([24.0, 18.0]), hp)
    assert separated(torch.tensor(35.0), torch.tensor([4.0, 5.0]), hp)


# -- which irrelevant inputs an edit is trained against -------------------------------------

def test_an_edit_is_trained_against_its_declared_neighbours_then_generic_texts():
    from kedit_vc.editors.wise.algorithm import irrelevant_texts

    hp = _hp(irrelevant=["g0", "g1", "g2"], irrelevant_per_edit=2, neighbour_irrelevant=2)
    assert irrelevant_texts(_request(3), hp, 0) == ["Neighbour 0 is in City0", "Neighbour 1 is in City1", "g0", "g1"]
    assert irrelevant_texts(_request(0), hp, 1) == ["g2", "g0"]        # the pool taken in turn, wrapping
    assert irrelevant_texts(_request(3), _hp(neighbour_irrelevant=0), 0)[0] == _hp().irrelevant[0]


@settings(max_examples=60, deadline=None)
@given(pool=st.integers(1, 12), per_edit=st.integers(1, 12), first=st.integers(0, 500))
def test_successive_edits_draw_different_generic_texts_until_the_pool_is_used_up(pool, per_edit, first):
    from kedit_vc.editors.wise.algorithm import irrelevant_texts

    hp = _hp(irrelevant=[f"text {i}" for i in range(pool)], irrelevant_per_edit=per_edit)
    count = min(per_edit, pool)
    drawn = [t for nth in range(first, first + pool) for t in irrelevant_texts(_request(0), hp, nth)]
    assert len(drawn) == pool * count
    # every text of the pool is drawn equally often over `pool` successive edits
    assert all(drawn.count(t) == count for t in hp.irrelevant)
    assert irrelevant_texts(_request(0), hp, first) == irrelevant_texts(_request(0), hp, first)  # deterministic


def test_irrelevant_input_hparams_are_checked():
    from kedit_vc.editors.wise.hparams import check

    assert any("irrelevant_per_edit" in p for p in check(_hp(irrelevant_per_edit=0)))
    assert any("neighbour_irrelevant" in p for p in check(_hp(neighbour_irrelevant=-1)))


# -- on the tiny model ----------------------------------------------------------------------

def _activations(model, module: str, delta: torch.Tensor, texts: list[str]) -> list[float]:
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.patches.sidememory.live import activation
    from test_patches import tokenizer_of

    seen: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(module).register_forward_hook(lambda _m, a, _o: seen.__setitem__("a", a[0]))
    try:
        out = []
        for text in texts:
            with torch.no_grad():
                model(input_ids=torch.tensor([encode_text(tokenizer_of(model), text)]))
            out.append(float(activation(seen["a"], delta)[1][0]))
        return out
    finally:
        handle.remove()


def test_after_a_commit_its_irrelevant_inputs_stay_under_the_threshold_and_its_prompt_over_it(store):
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.editors.wise.algorithm import irrelevant_texts
    from kedit_vc.patches.sidememory.live import live_memory

    result = commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    (request,) = result.plan.requests
    info = store.read_commit("HEAD").manifest["extra"]["editor_info"][0]["edits"][0]
    (patch,) = [p for p in store.read_commit("HEAD").patches() if p.kind == "sidememory"]
    memory = live_memory([patch])[patch.module]
    hp = build_hparams("wise", {"layer": 2, "steps": 40, "lr": 50.0, "alpha": 0.05, "beta": 0.5, "gamma": 0.3})
    texts = irrelevant_texts(request, hp, 0)
    assert texts[0] == "The Louvre is located in the city of Paris"       # the spec's declared neighbour
    model = load(store)
    irrelevant = _activations(model, patch.module, memory.delta, texts)
    assert irrelevant == pytest.approx(info["irrelevant_activation"], abs=1e-3)
    prompt = request.prompt.replace("{}", request.subject) + " " + request.target_new
    (edit,) = _activations(model, patch.module, memory.delta, [prompt])
    assert edit >= memory.threshold > max(irrelevant), (edit, memory.threshold, irrelevant)
    if info["steps"] < hp.steps:   # stopped early: only where every margin holds, α included
        assert max(irrelevant) <= hp.alpha + 1e-4 and edit >= hp.beta


def test_the_threshold_is_act_ratio_times_the_least_live_edit_activation_commit_after_commit(store):
    from kedit_vc.ops import revert
    from kedit_vc.patches.sidememory.live import live_memory

    def recorded():
        """(the live memory, each live edit's activation as its commit recorded it)."""
        patches = [p for p in store.live_patches("HEAD") if p.kind == "sidememory"]
        return live_memory(patches)[patches[0].module], [float(a) for p in patches for a in p.activations]

    def trained():
        return [e["activation"] for e in store.read_commit("HEAD").manifest["extra"]["editor_info"][0]["edits"]]

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    memory, first = recorded()
    assert first == pytest.approx(trained(), abs=1e-4)          # the activation the edit ended its training on
    assert memory.threshold == pytest.approx(0.88 * min(first), rel=1e-6)
    commit(store, "b.kedit", TOKYO, method=TINY_WISE)
    memory, both = recorded()
    assert both[1:] == pytest.approx(trained(), abs=1e-4) and both[:1] == first
    assert memory.threshold == pytest.approx(0.88 * min(both), rel=1e-6)
    revert(store, "HEAD")
    memory, back = recorded()
    assert back == first and memory.threshold == pytest.approx(0.88 * min(first), rel=1e-6)


# -- memory replay -----------------------------------------------------------------------------

def test_replay_keeps_the_shards_earlier_edit_over_beta_when_a_later_commit_trains_the_shard(store):
    """A later commit into the same shard reads the earlier edit back from the patch's stored
    texts; with ``replay`` its training also pushes that edit back up to its recorded activation,
    without it nothing does."""
    from kedit_vc.editors.wise.algorithm import memory_texts, replay_loss
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.ops import revert
    from kedit_vc.patches.sidememory.live import live_memory
    from test_patches import tokenizer_of

    def method(replay: int) -> str:
        return f"method wise {{ layer = 2 steps = 40 lr = 50.0 alpha = 0.05 beta = 2.0 gamma = 0.3 replay = {replay} }}"

    def earlier_activation() -> float:
        patches = [p for p in store.live_patches("HEAD") if p.kind == "sidememory"]
        memory = live_memory(patches)[patches[0].module]
        model = load(store)
        seen: dict[str, torch.Tensor] = {}
        module = model.get_submodule(patches[0].module)
        handle = module.register_forward_hook(lambda _m, a, _o: seen.__setitem__("a", a[0]))
        with torch.no_grad():
            model(input_ids=torch.tensor([memory_texts(patches, "shard", 0)[0][0]]))
        handle.remove()
        return float((seen["a"][0] @ memory.delta.T).norm(dim=-1).mean())

    commit(store, "a.kedit", EIFFEL, method=method(1))
    first = [p for p in store.live_patches("HEAD") if p.kind == "sidememory"]
    ((sequence, recorded),) = memory_texts(first, "shard", 0)
    assert recorded == pytest.approx(float(first[0].activations[0]))
    prefix = encode_text(tokenizer_of(load(store)), "The Eiffel Tower")
    assert sequence[:len(prefix)] == prefix and memory_texts(first, "shard", 1) == []
    alone = earlier_activation()
    commit(store, "b.kedit", TOKYO, method=method(0))
    without = earlier_activation()
    revert(store, "HEAD")
    commit(store, "c.kedit", TOKYO, method=method(1))
    assert len(memory_texts([p for p in store.live_patches("HEAD") if p.kind == "sidememory"], "shard", 0)) == 2
    with_replay = earlier_activation()
    # measured: 0.90 after its own commit, 0.75 once a later edit trained the shard, 1.06 with replay
    assert without < alone and with_replay > without + 0.2, (alone, without, with_replay)
    delta = torch.ones(4, 3)
    assert float(replay_loss([], delta, _hp(replay=1, beta=2.0), 0)) == 0.0
    assert float(replay_loss([(torch.zeros(2, 3), 0.0)], delta, _hp(replay=1, beta=2.0), 0)) == pytest.approx(2.0)
    assert float(replay_loss([(torch.zeros(2, 3), 5.0)], delta, _hp(replay=1, beta=2.0), 0)) == pytest.approx(5.0)
    assert float(replay_loss([(torch.zeros(2, 3), 5.0)], delta, _hp(replay=0, beta=2.0), 0)) == 0.0
