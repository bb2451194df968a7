"Tests of tttlab.arc_llm: grids as text, the TTT set, voting, the solver and its CLI, with real models and real ARC tasks."
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from tttlab.arc_data import Task, grid_key, load_tasks, smallest_tasks
from tttlab.arc_llm import (IGNORE, ArcLLMConfig, ArcLLMSettingsError, ArcLLMSolver, EvaluationLeakError, TaskEncoder, cell_separator,
                            default_adapter_dir, evaluation_ids, finetune, finetune_main, grid_to_text, leave_one_out_tasks,
                            load_arc_model, one_token_per_cell, predict, solve_main, text_to_grid, ttt_dataset, vote)
from tttlab.cli import main as tttlab_main
from tttlab.models import default_model_dir, tiny_llama


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(str(default_model_dir()))
    if t.pad_token is None: t.pad_token = t.eos_token
    return t

@pytest.fixture(scope="module")
def small():
    return smallest_tasks(load_tasks("evaluation"), 3)

grids = st.integers(1, 30).flatmap(lambda h: st.integers(1, 30).flatmap(
    lambda w: st.lists(st.lists(st.integers(0, 9), min_size=w, max_size=w), min_size=h, max_size=h)))

@settings(max_examples=60, deadline=None)
@given(grids, st.sampled_from(["", " ", ","]))
def test_text_round_trip(g, sep):
    g = np.array(g, dtype=np.int8)
    assert np.array_equal(text_to_grid(grid_to_text(g, sep), sep), g)

@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789\n xI\u0663", max_size=200))
def test_junk_is_a_failed_attempt_never_a_crash(s):
    g = text_to_grid(s)
    assert g is None or (g.ndim == 2 and 1 <= min(g.shape) and max(g.shape) <= 30 and g.min() >= 0 and g.max() <= 9)

def test_default_tokenizer_one_token_per_cell(tok):
    assert one_token_per_cell(tok, "") and cell_separator(tok) == ""
    g = np.arange(12, dtype=np.int8).reshape(3, 4) % 10
    assert len(tok(grid_to_text(g), add_special_tokens=False)["input_ids"]) == 3 * 5 - 1

def test_ttt_dataset_uses_demonstrations_only(tok, small):
    enc = TaskEncoder(tok)
    big = np.ones((29, 29), np.int8)  # a test pair no demonstration resembles: rows of 29 cells must never appear
    task = Task(small[2].id, small[2].train, [big], [2 * big])
    ds = ttt_dataset(task, enc, cap=40, max_tokens=4096)
    assert len(ds) == 40 and len({tuple(e["input_ids"][0].tolist()) for e in ds.examples}) == 40
    for e in ds.examples:
        assert all(len(line) < 29 for line in tok.decode(e["input_ids"][0]).split("\n"))
        labelled = [l for l in e["labels"][0].tolist() if l != IGNORE]
        assert labelled[-1] == tok.eos_token_id and set(tok.decode(labelled[:-1])) <= set("0123456789\n")
    for k, loo in enumerate(leave_one_out_tasks(task)):
        assert np.array_equal(loo.test_outputs[0], task.train[k][1]) and len(loo.train) == len(task.train) - 1
    short = ttt_dataset(task, enc, cap=40, max_tokens=10)
    assert len(short) == 0 and short.too_long > 0

def test_vote_ranks_by_count_then_order():
    a, b = np.zeros((1, 1), np.int8), np.ones((1, 1), np.int8)
    assert [grid_key(g) for g in vote([b, a, a, None, b, a])] == [grid_key(a), grid_key(b)]
    assert [grid_key(g) for g in vote([b, a, a, b])] == [grid_key(b), grid_key(a)]  # a tie: the first seen ranks first
    assert vote([]) == []

def test_finetune_refuses_evaluation_tasks(tok, small):
    with pytest.raises(EvaluationLeakError, match="evaluation task"):
        finetune(tiny_llama(vocab_size=len(tok)), tok, small, "/tmp/never")

def test_finetune_leaves_out_every_datasets_evaluation_tasks(tmp_path, tok, capsys):
    a2 = load_tasks("training", "arcagi2")
    leaked = [t for t in a2 if t.id in {e.id for e in load_tasks("evaluation", "arcagi")}]
    assert len(leaked) == 376 and {t.id for t in leaked} <= evaluation_ids()  # ARC-AGI-1 evaluation tasks in ARC-AGI-2 training
    tasks = smallest_tasks(a2, 2) + smallest_tasks(leaked, 2)
    finetune(tiny_llama(vocab_size=len(tok)), tok, tasks, tmp_path, seconds=0.5, max_tokens=200, per_task=1, dataset="arcagi2",
             progress=False)
    assert "left out 2 of 4 arcagi2 task(s)" in capsys.readouterr().out
    record = json.loads((tmp_path / "finetune.json").read_text())
    assert (record["dataset"], record["tasks"], record["excluded_evaluation_tasks"]) == ("arcagi2", 2, 2)

def test_adapter_reset_between_tasks_and_shared_adapter(tok, small):
    solver = ArcLLMSolver(tiny_llama(vocab_size=len(tok)), tok, ArcLLMConfig(cap=3, epochs=1, n_views=2, rank=4))
    init = {k: v.clone() for k, v in solver.model.state_dict().items() if "lora_" in k}
    for t in small[:2]:
        sol = solver(t)
        assert sol.extras["ttt_steps"] == 3
        assert all(torch.equal(v, solver.model.state_dict()[k]) for k, v in init.items())
    shared = ArcLLMSolver(tiny_llama(vocab_size=len(tok)), tok, ArcLLMConfig(cap=3, epochs=1, n_views=1, rank=4, shared_adapter=True))
    before = {k: v.clone() for k, v in shared.model.state_dict().items() if "lora_B" in k}
    shared.prepare(small[:2])
    trained = {k: v.clone() for k, v in shared.model.state_dict().items() if "lora_B" in k}
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    shared(small[0])
    assert all(torch.equal(v, shared.model.state_dict()[k]) for k, v in trained.items())

def test_solve_main_any_model_folder(tmp_path, tok):
    folder = tmp_path / "tiny"
    tiny_llama(vocab_size=len(tok)).save_pretrained(folder); tok.save_pretrained(folder)
    lines, log = [], tmp_path / "tasks.jsonl"
    assert solve_main(["--smallest", "2", "--model", str(folder), "--adapter", "none", "--cap", "2", "--epochs", "1",
                       "--views", "2", "--json", "--log", str(log)], out=lines.append) == 0
    s = json.loads(lines[-1])
    assert s["tasks"] == 2 and s["ttt_steps"] == 4 and s["crashes"] == 0 and {"pass_at_2", "seconds_per_task", "single_view_solved"} <= set(s)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["id"] for r in rows] == [t.id for t in smallest_tasks(load_tasks("evaluation"), 2)]
    assert sum(r["solved"] for r in rows) == s["solved"] and sum(r["single_view_solved"] for r in rows) == s["single_view_solved"]
    assert all(r["ttt_steps"] == 2 and r["seconds"] >= r["predict_seconds"] > 0 for r in rows)

@pytest.mark.slow
def test_shipped_adapter_writes_grids(small):
    assert (default_adapter_dir() / "adapter_config.json").is_file()
    assert sum(f.stat().st_size for f in default_adapter_dir().iterdir()) < 6_000_000
    model, tok = load_arc_model()
    att, views = predict(model, TaskEncoder(tok), small[0], n_views=2)
    assert sum(v is not None for v in views[0]) >= 1  # the fine-tuned model answers with a grid

@pytest.mark.slow
def test_finetune_main_then_solve(tmp_path):
    out = tmp_path / "adapter"
    assert finetune_main(["--seconds", "3", "--out", str(out), "--max-tokens", "160", "--per-task", "1"]) == 0
    assert (out / "adapter_config.json").is_file() and json.loads((out / "finetune.json").read_text())["steps"] >= 1
    lines = []
    assert solve_main(["--smallest", "1", "--adapter", str(out), "--no-ttt", "--no-vote", "--json"], out=lines.append) == 0
    assert json.loads(lines[-1])["tasks"] == 1

@pytest.mark.parametrize("argv, says", [
    (["--views", "0"], "n_views: input should be greater than 0"),
    (["--alpha", "-1"], "alpha: input should be greater than 0")])
def test_impossible_solver_setting_is_one_error_line(argv, says, capsys):
    with pytest.raises(ArcLLMSettingsError, match=says): solve_main(argv)
    assert tttlab_main(["arc", "solve", "--method", "llm-ttt", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tttlab arc solve --method llm-ttt: error: impossible solver settings") and says in err
    assert "Traceback" not in err and err.count("\n") == 1

def test_impossible_finetune_setting_is_a_settings_error(tok, small):
    with pytest.raises(ArcLLMSettingsError, match="time_limit_s: input should be greater than 0"):
        finetune(tiny_llama(vocab_size=len(tok)), tok, small, "/tmp/never", seconds=0)

@pytest.mark.parametrize("argv", [["arc", "solve", "--method", "llm-ttt", "--limit", "-1"],
                                  ["arc", "solve", "--method", "llm-ttt", "--smallest", "0"],
                                  ["arc", "finetune", "--per-task", "-2"]])
def test_counts_below_one_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e: tttlab_main(argv)
    assert e.value.code == 2 and "must be a whole number of at least 1" in capsys.readouterr().err

def test_missing_adapter_is_a_clear_error(tmp_path):
    from tttlab.models import TTTLabError
    with pytest.raises(TTTLabError, match="no peft adapter"):
        load_arc_model(adapter=tmp_path / "nothing")

def test_quantized_load_without_bitsandbytes_is_a_clear_error():
    import importlib.util
    from tttlab.models import TTTLabError
    if importlib.util.find_spec("bitsandbytes") is not None: pytest.skip("bitsandbytes is installed")
    with pytest.raises(TTTLabError, match="bitsandbytes"):
        load_arc_model(adapter=None, bits=8)
