"Integration tests of tttlab.lora: SIGKILL and resume, SIGKILL while a checkpoint is replaced, and LoRA on the real default model."
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tttlab.lora import (CheckpointStore, LoRAConfig, LoRAStrategy, MemoryMonitor, estimate_training_memory,
                         find_target_modules, parameter_report, peft_quietly)
from tttlab.models import LearningConfig, load_lm

torch.set_num_threads(1)  # on a shared 2-core machine two threads spin against other processes and crawl

TRAIN_SCRIPT = textwrap.dedent('''
    import json, sys, time, torch
    torch.set_num_threads(1)
    from tttlab.lora import CheckpointStore, LoRAConfig, TrainConfig, TrainingOrchestrator, add_lora, lm_loss
    from tttlab.models import tiny_llama
    root, resume, delay = sys.argv[1], sys.argv[2] == "resume", float(sys.argv[3])
    g = torch.Generator().manual_seed(1)
    data = [torch.randint(0, 64, (1, 24), generator=g) for _ in range(12)]
    val = torch.cat([torch.randint(0, 64, (1, 24), generator=g) for _ in range(3)])
    def slow_loss(model, batch):
        time.sleep(delay)  # gives the parent time to kill the process partway through
        return lm_loss(model, batch)
    def val_loss(model): return {"loss": lm_loss(model, val).item()}
    model = add_lora(tiny_llama(vocab_size=64), LoRAConfig(r=4, dropout=0.1))  # dropout: the RNG state matters too
    cfg = TrainConfig(epochs=3, learning_rate=5e-3, eval_every=5, checkpoint_every=2, keep_last=2, progress=False)
    res = TrainingOrchestrator(model, slow_loss, data, cfg, val_loss, CheckpointStore(root)).fit(resume=resume)
    print(json.dumps({"final": res.final_metrics, "loss": res.history["loss"], "steps": res.steps,
                      "eval": res.history["eval/loss"]}))
''')


def _run(script, *args, **kw):
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE, text=True, **kw)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    full = _run(script, tmp_path / "full", "fresh", 0.0)
    killed = _run(script, tmp_path / "killed", "fresh", 0.15)
    store = CheckpointStore(tmp_path / "killed")
    deadline = time.time() + 120
    while time.time() < deadline and not any(c["step"] >= 8 for c in (store.list("default") if (tmp_path / "killed" / "default").exists() else [])):
        assert killed.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    last = store.latest("default")
    assert last is not None and store.load("default").step < 36  # killed partway through 36 steps
    resumed = _run(script, tmp_path / "killed", "resume", 0.0)
    out_resumed, out_full = resumed.communicate(timeout=300)[0], full.communicate(timeout=300)[0]
    a, b = json.loads(out_resumed.strip().splitlines()[-1]), json.loads(out_full.strip().splitlines()[-1])
    assert a["steps"] == b["steps"] == 36
    assert a["final"] == b["final"] and a["loss"] == b["loss"] and a["eval"] == b["eval"]


CRASH_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch
    from tttlab.lora import CheckpointStore
    store = CheckpointStore(sys.argv[1])
    store.save("t", 1, state={"w": torch.ones(3)})
    rename = os.replace
    def die_after_setting_aside(src, dst):
        rename(src, dst)
        if ".old-" in os.fspath(dst): os.kill(os.getpid(), signal.SIGKILL)  # between replace_dir's two renames
    os.replace = die_after_setting_aside
    store.save("t", 1, state={"w": torch.zeros(3)})  # a second save of the same step replaces the first
''')


def test_sigkill_between_renames_loses_nothing(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    proc = _run(script, tmp_path / "store")
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    task = tmp_path / "store" / "t"
    assert not (task / "step-00000001").exists() and any(".old-" in d.name for d in task.iterdir())
    store = CheckpointStore(tmp_path / "store")
    assert torch.equal(store.load("t").state["w"], torch.ones(3))  # the read put the old checkpoint back
    store.cleanup("t", keep_last=1)  # and the killed save's temporary folder goes
    assert [d.name for d in task.iterdir()] == ["step-00000001"]


# --- the real default model (SmolLM2-135M-Instruct) ---------------------------------------------------------------

DOC = ("The Treskavel Mountain Railway Company was founded in 1887 by Odarin Fellwick, a timber merchant. "
       "The lower terminus of the line has always been the valley town of Ostrelline.")


@pytest.mark.slow
def test_lora_on_default_model(tmp_path):
    from peft import PeftModel
    model, tok = load_lm()
    ids = tok(DOC, return_tensors="pt").input_ids
    with torch.no_grad(): base_logits = model(ids).logits
    assert find_target_modules(model) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    st = LoRAStrategy(model, LearningConfig(strategy="lora", learning_rate=1e-3), LoRAConfig(steps_per_chunk=3))
    rep = parameter_report(st.model)
    assert rep["trainable_fraction"] < 0.1  # over 90% fewer trainable parameters
    losses = [st.learn_chunk(ids) for _ in range(2)]
    assert losses[1] < losses[0]
    with torch.no_grad():
        learned = st.model(ids).logits
        with st.disabled(): assert torch.equal(st.model(ids).logits, base_logits)
    path = st.save_adapter(tmp_path / "adapter")
    fresh, _ = load_lm()
    with torch.no_grad(), peft_quietly(): assert torch.equal(PeftModel.from_pretrained(fresh, path)(ids).logits, learned)
    st.reset()
    with torch.no_grad(): assert torch.equal(st.model(ids).logits, base_logits)


@pytest.mark.slow
def test_memory_estimate_against_measurement():
    model, _ = load_lm()
    st = LoRAStrategy(model, LearningConfig(strategy="lora"), LoRAConfig(include_mlp=True))
    x = torch.randint(0, 49152, (1, 512))
    with MemoryMonitor() as mon:
        start = mon.sample()["rss_mb"]
        st.learn_chunk(x)
    used = mon.peak_rss_mb - start
    est = estimate_training_memory(st.model, 512).extra / 2**20
    assert 0.4 < est / used < 2.5, (est, used)
