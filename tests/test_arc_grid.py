"Integration tests of the five ARC grid models on real ARC-AGI-1 tasks: contracts, equivariance, smoke, CLI."
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from tttlab.arc_data import ARCFormatError, load_tasks, smallest_tasks, visible_side
from tttlab.arc_grid import (ARCHS, CANVAS, PAD, AblationConfig, AugmentedBatches, GridExample, build_model, collate,
                             colour_onehot, colour_pool, equivariance_gap, linearise, pad_grid, parse_output, sample_example,
                             smoke_main, smoke_test)
from tttlab import arc_grid  # test_time_train is called through the module so pytest does not collect it
from tttlab.cli import arc_main

torch.set_num_threads(1)
TRAIN = load_tasks("training", "arcagi")
SMALL = smallest_tasks(TRAIN, 40)
attempt_lists = lambda attempts: [[[g.tolist() for g in a] for a in per_test] for per_test in attempts]


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
        assert all(p is None or (p.ndim == 2 and p.max() <= 9 and max(p.shape) <= CANVAS) for p in preds)
        if arch == "decoder":  # only the token budget is bounded: h rows of w cells and a newline each fit in 6 * 7 + 1 tokens
            assert all(p is None or p.shape[0] * (p.shape[1] + 1) <= 6 * 7 + 1 for p in preds)
        else:  # the encoder-decoders decode a 6x6 window
            assert all(p is None or max(p.shape) <= 6 for p in preds)


def test_colour_pool_sums_fp16_without_overflow():
    h, onehot = torch.full((1, 5400, 8), 20.0), colour_onehot(torch.ones(1, 5400, dtype=torch.long))  # 5400 * 20 > 65504
    with torch.autocast("cpu", dtype=torch.float16): pooled, counts = colour_pool(h, onehot)
    assert torch.equal(pooled[0, 1], torch.full((8,), 20.0)) and counts[0, 1] == 5400
    pooled, _ = colour_pool(h.half(), onehot.half())
    assert torch.isfinite(pooled).all() and torch.equal(pooled[0, 1], torch.full((8,), 20.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_colour_pool_unchanged_in_fp32_and_bf16(dtype):
    # the ablation's results were measured with this formula: the fp16 fix must leave fp32 and bf16 bit for bit
    g = torch.Generator().manual_seed(0)
    h, onehot = torch.randn(3, 900, 16, generator=g) * 4, colour_onehot(torch.randint(0, PAD + 1, (3, 900), generator=g))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        pooled, counts = colour_pool(h, onehot)
        counts_then = onehot.sum(1)
        then = (onehot.transpose(1, 2) @ h.float()) / counts_then.clamp(min=1)[..., None]
    assert pooled.dtype == then.dtype and torch.equal(pooled, then) and torch.equal(counts, counts_then)


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
    with pytest.raises(arc_grid.GridSettingsError, match="max_side"): arc_grid.ablation_config(max_side=40)
    with pytest.raises(arc_grid.GridSettingsError, match="models: list should have at least 1 item"):
        arc_grid.ablation_config(models=[])
    with pytest.raises(arc_grid.GridSettingsError, match="val_tasks=40"): arc_grid.ablation_splits(AblationConfig(max_side=5))


@pytest.mark.parametrize("argv, says", [(["--budget-minutes", "0"], "budget_minutes"), (["--max-side", "40"], "max_side"),
                                        (["--max-side", "5"], "leaves 25 ARC-AGI-1 training tasks"),
                                        (["--max-side", "2"], "leaves 0"), (["--eval-tasks", "-1"], "eval_tasks"),
                                        (["--ttt-tasks", "-1"], "ttt_tasks"), (["--val-tasks", "0"], "val_tasks"),
                                        (["--seed", "-1"], "seed")])
def test_ablate_cli_rejects_impossible_settings(capsys, argv, says):
    assert arc_main(["ablate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tttlab arc ablate: error:") and says in err and "\n" not in err and "Traceback" not in err


def test_smoke_cli(capsys):
    assert smoke_main(["--models", "decoder", "champion", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["arch"] for r in res] == ["decoder", "champion"] and all(r["ok"] for r in res)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, len(TRAIN) - 1), st.lists(st.integers(0, 13), min_size=1, max_size=40))
def test_grid_stop_only_stops_hopeless_sequences(i, noise):
    out = linearise(np.zeros((0, 0)), TRAIN[i].train[0][1])[1:]  # a real output grid, its rows and EOS
    stop = arc_grid.GridStop(1)
    assert [bool(stop(torch.tensor([out[:k + 1]]))[0]) for k in range(len(out))] == [False] * (len(out) - 1) + [True]
    seq, stop = out[:len(out) // 2] + noise, arc_grid.GridStop(1)
    k = next((k for k in range(len(seq)) if stop(torch.tensor([seq[:k + 1]]))[0]), None)
    if k is not None and seq[k] != arc_grid.EOS:  # stopped without EOS: no continuation can spell a grid
        assert all(parse_output(seq[:k + 1] + tail) is None for tail in ([], [arc_grid.EOS], [arc_grid.NL, arc_grid.EOS], out))


def test_grid_stop_keeps_the_answers():
    m = build_model("decoder", seed=3).eval()
    exs = [GridExample(t.test_inputs[0], None) for t in SMALL[:6]]
    a, b = m.predict(exs, side=6), m.predict(exs, side=6, stop_early=False)
    assert [None if p is None else p.tolist() for p in a] == [None if p is None else p.tolist() for p in b]


def test_size_groups_cover_every_task_and_shrink_batches():
    grouped = AugmentedBatches(TRAIN, "grid", 16, seed=1, bucket=32)
    assert sorted(i for g in grouped.groups for i in g) == list(range(len(grouped.tasks)))
    sides = [arc_grid.task_side(t) for t in grouped.tasks]
    assert sides == sorted(sides)
    area = lambda b: int(np.prod(arc_grid.content_extent(b["source_mask"])))
    mixed = AugmentedBatches(TRAIN, "grid", 16, seed=1, bucket=None)
    assert np.mean([area(grouped[i]) for i in range(30)]) < 0.7 * np.mean([area(mixed[i]) for i in range(30)])


def test_task_answers_do_not_depend_on_batch():
    ev = load_tasks("evaluation", "arcagi")
    small, big = ev[0], max(smallest_tasks(ev, 30), key=visible_side)
    assert visible_side(small) < visible_side(big)
    for arch in ("encdec-2d", "champion"):
        m = build_model(arch)
        alone = arc_grid.predict_tasks(m, [small], views=2)
        assert attempt_lists(arc_grid.predict_tasks(m, [small, big], views=2)[:1]) == attempt_lists(alone), arch
        assert attempt_lists(arc_grid.predict_tasks(m, [big, small], views=2)[1:]) == attempt_lists(alone), arch


def test_run_ablation_saves_result(tmp_path, monkeypatch):
    # a tiny learning rate keeps the model near its initialisation, which answers with grids of several sizes
    cfg = AblationConfig(models=["encdec-2d"], budget_minutes=0.02, max_side=6, val_tasks=2, eval_tasks=5, ttt_tasks=5,
                         ttt_steps=1, eval_every=2, learning_rate=1e-6)
    seen, measure = {}, arc_grid.measure_ttt
    def spy(model, tasks, cfg, progress=True, before=None):
        seen.update(model=model, tasks=tasks, before=before)
        return measure(model, tasks, cfg, progress, before)
    monkeypatch.setattr(arc_grid, "measure_ttt", spy)
    res = arc_grid.run_ablation(cfg, tmp_path, progress=False)
    saved = arc_grid.AblationResult.model_validate_json((tmp_path / "result.json").read_text())
    assert saved.models[0].arch == "encdec-2d" and saved.models[0].eval == res.models[0].eval
    # TTT's "before" is the trained model's answers from the batched evaluation pass: the same as one task at a time,
    # like its "after"
    alone = [arc_grid.predict_tasks(seen["model"], [t], cfg.views)[0] for t in seen["tasks"]]
    assert [t.id for t in seen["tasks"]] == [t.id for t in arc_grid.ablation_splits(cfg)[2]]
    assert all(per_test[0] for per_test in alone)  # every task has attempts to compare
    assert attempt_lists(seen["before"]) == attempt_lists(alone)
    assert res.models[0].ttt["before"] == arc_grid.score_attempts(seen["tasks"], alone)
