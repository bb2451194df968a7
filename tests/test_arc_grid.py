"Integration tests of the five ARC grid models on real ARC-AGI-1 tasks: contracts, equivariance, smoke, CLI."
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from tttlab.arc_data import ARCFormatError, load_tasks, smallest_tasks
from tttlab.arc_grid import (ARCHS, CANVAS, PAD, AblationConfig, AugmentedBatches, GridExample, build_model, collate,
                             equivariance_gap, linearise, pad_grid, parse_output, sample_example, smoke_main, smoke_test)
from tttlab import arc_grid  # test_time_train is called through the module so pytest does not collect it

torch.set_num_threads(1)
TRAIN = load_tasks("training", "arcagi")
SMALL = smallest_tasks(TRAIN, 40)


@pytest.mark.parametrize("bad", [np.zeros((31, 2), int), np.zeros((2, 31), int), [[0, 10]], [[-1, 2]], [[1, 2], [3]]])
def test_bad_grids_raise(bad):
    with pytest.raises(ARCFormatError): pad_grid(bad)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, len(TRAIN) - 1), st.integers(0, 10_000))
def test_contracts_on_real_tasks(i, seed):
    e = sample_example(TRAIN[i], np.random.default_rng(seed))
    seq, ctx = collate([e], "sequence"), collate([e], "context")
    out = seq["labels"][0][seq["labels"][0] != -100].tolist()
    assert np.array_equal(parse_output(out), e.output)  # the loss covers exactly the output
    assert seq["input_ids"][0, :len(linearise(e.input))].tolist() == linearise(e.input)
    for k in ("source", "target"):
        assert ctx[k].shape == (1, CANVAS, CANVAS)
        assert ((ctx[k] == PAD) == ~ctx[f"{k}_mask"]).all()
    assert ctx["context_inputs"].shape[2:] == (CANVAS, CANVAS)
    for p, (ci, co) in enumerate(e.context):  # different in/out sizes are padded, never refused
        assert int(ctx["context_input_mask"][0, p].sum()) == ci.size and int(ctx["context_output_mask"][0, p].sum()) == co.size


@pytest.mark.parametrize("arch", ARCHS)
def test_smoke(arch):
    r = smoke_test(arch, SMALL)
    assert r.ok, r
    assert not r.missing_grads and not r.bad_grads and np.isfinite(r.loss)


def test_smoke_detects_unused_parameter():
    m = build_model("equivariant"); m.extra = torch.nn.Linear(3, 3)
    r = smoke_test("equivariant", SMALL, model=m)
    assert not r.ok and r.missing_grads == ["extra.weight", "extra.bias"]


@settings(max_examples=8, deadline=None)
@given(st.integers(0, len(SMALL) - 1), st.permutations(list(range(10))))
def test_colour_equivariance(i, perm):
    b = collate([sample_example(SMALL[i], np.random.default_rng(i))], "context")
    for arch in ("equivariant", "champion"):
        assert equivariance_gap(build_model(arch, seed=i).eval(), b, perm) < 1e-4


def test_plain_model_is_not_equivariant():
    b = collate([sample_example(t, np.random.default_rng(0)) for t in SMALL[-3:]], "grid")
    assert equivariance_gap(build_model("encdec-2d").eval(), b, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]) > 1e-3


def test_every_model_predicts_grids_or_none():
    exs = [GridExample(t.test_inputs[0], None, list(t.train)) for t in SMALL[:3]]
    for arch in ARCHS:
        preds = build_model(arch).eval().predict(exs, side=6)
        assert len(preds) == 3
        assert all(p is None or (p.ndim == 2 and p.max() <= 9 and max(p.shape) <= 6) for p in preds)


def test_ttt_leaves_base_untouched():
    base = build_model("encdec-1d")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = arc_grid.test_time_train(base, SMALL[0], steps=2, batch_size=2)
    assert all(torch.equal(base.state_dict()[k], v) for k, v in before.items())
    assert any(not torch.equal(tuned.state_dict()[k], v) for k, v in before.items())


def test_batches_reproducible():
    ab = AugmentedBatches(SMALL, "context", batch_size=3, seed=5)
    assert all(torch.equal(ab[7][k], ab[7][k]) for k in ab[7])


def test_config_errors():
    with pytest.raises(ValueError): AblationConfig(budget_minutes=0)
    with pytest.raises(ValueError): AblationConfig(models=["resnet"])


def test_smoke_cli(capsys):
    assert smoke_main(["--models", "decoder", "champion", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["arch"] for r in res] == ["decoder", "champion"] and all(r["ok"] for r in res)
