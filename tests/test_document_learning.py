"Integration tests of test-time document learning with the real default model (SmolLM2-135M-Instruct)."
import io
import json

import pytest
import torch

from tttlab.document import load_document, sample_pdf_path
from tttlab.lact import Generator, LaCTConfig, LaCTUpdater, TTTTrainer
from tttlab.models import LearningConfig, load_lm
from tttlab.lora import NaiveLoRA
from tttlab.recall import lm_text_loss, main
from tttlab.ttt_linear import TTTConfig, TTTLinearStrategy, TTTModel

pytestmark = pytest.mark.slow

TEXT = ("The Varnholm lighthouse was built in 1861 by the stonemason Ebba Skarrow. Its lamp burned whale oil until "
        "1902, when the keeper Tomas Quill installed a paraffin burner. The tower is painted in red and white bands "
        "and stands forty-two metres above the harbour of Lisk. Every spring the islanders hold the Festival of "
        "the Lamp, and the oldest fisherman rings the bronze bell that hangs at the tower door. ") * 2

@pytest.fixture
def lm():
    torch.manual_seed(0)
    return load_lm()

def test_branch_ttt_model_keeps_base_logits_and_generates(lm):
    model, tok = lm
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad(): ref = model(ids).logits
    tm = TTTModel.from_pretrained(model, tok, TTTConfig(last_k=1))
    with torch.no_grad(): assert torch.allclose(tm(ids).logits, ref, atol=1e-5)
    assert len(tm.generate("The capital of France is", max_new_tokens=3)) > 0

def test_ttt_model_generates_with_every_block_replaced(lm):
    model, tok = lm
    n = model.config.num_hidden_layers
    tm = TTTModel.from_pretrained(model, tok, TTTConfig(placement="replace-mlp", last_k=n))
    assert len(tm.ttt_layers) == n
    assert isinstance(tm.generate("Hello", max_new_tokens=2), str)
    tm.forward(tok("Hello", return_tensors="pt").input_ids, use_cache=True)
    assert tm.past is not None
    tm.clear_context()
    assert tm.past is None

def test_lact_learns_a_three_chunk_document_and_resets_exactly(lm):
    model, tok = lm
    doc = load_document(TEXT.encode(), tok, chunk_size=64)
    assert len(doc.chunks) >= 3
    cfg = LearningConfig(learning_rate=0.02, epochs=1, chunk_size=64)
    up = LaCTUpdater(model, cfg, LaCTConfig(last_k=2))
    before = lm_text_loss(model, tok)
    calls = []
    m = TTTTrainer(up, cfg).train_on_document(doc, callback=lambda i, n, l: calls.append((i, n)))
    assert calls == [(i, len(doc.chunks)) for i in range(len(doc.chunks))]
    assert m.final_loss < m.initial_loss and m.skipped_updates == 0 and m.weight_delta > 0
    ttt, base = Generator(up, tok).compare("The Varnholm lighthouse was built in", max_tokens=4)
    up.reset()
    assert lm_text_loss(model, tok) == before
    assert Generator(up, tok).generate("The Varnholm lighthouse was built in", max_tokens=4).text == base.text

def test_ttt_linear_strategy_lowers_the_loss_and_resets_exactly(lm):
    model, tok = lm
    ids = tok(TEXT[:400], return_tensors="pt").input_ids
    st = TTTLinearStrategy(model, LearningConfig(strategy="ttt-linear", learning_rate=1e-3), TTTConfig(last_k=2))
    before = lm_text_loss(model, tok)
    losses = [st.learn_chunk(ids) for _ in range(3)]
    assert losses[-1] < losses[0]
    st.reset()
    assert lm_text_loss(model, tok) == before

def test_naive_lora_peer_learns_and_resets(lm):
    model, tok = lm
    ids = tok(TEXT, return_tensors="pt").input_ids
    peer = NaiveLoRA(model, steps=2)
    before = lm_text_loss(model, tok)
    peer.learn_chunk(ids)
    assert peer.weight_delta() > 0 and lm_text_loss(model, tok) != before
    peer.reset()
    assert lm_text_loss(model, tok) == before

def test_recall_cli_json_line(tmp_path, capsys):
    (tmp_path / "doc.txt").write_text(TEXT)
    (tmp_path / "qa.json").write_text(json.dumps({"qa": [
        {"question": "Who built the Varnholm lighthouse?", "answers": ["Ebba Skarrow"], "cloze": "The Varnholm lighthouse was built in 1861 by the stonemason"}]}))
    assert main([str(tmp_path / "doc.txt"), str(tmp_path / "qa.json"), "--epochs", "1", "--no-in-context", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["retention_loss_after_reset"] == out["retention_loss_before"]
    assert 0 <= out["cloze_ttt"] <= 1 and out["learn_seconds"] > 0 and out["peak_rss_mb"] > 0

def test_sample_pdf_is_learnable(lm):
    model, tok = lm
    doc = load_document(sample_pdf_path(), tok, chunk_size=2048)
    assert doc.n_tokens > 100

def test_demo_prints_answers_and_metrics(tmp_path, capsys):
    from tttlab.models import tiny_llama
    from tttlab.recall import demo
    _, tok = load_lm()
    tiny_llama(vocab_size=len(tok), hidden=64, layers=4).save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")
    assert demo(["--model", str(tmp_path / "tiny")]) == 0
    out = capsys.readouterr().out
    assert "TTT: learned, context cleared" in out and "accepted:" in out and "QA correct" in out and "retention" in out

@pytest.mark.parametrize("strategy", ["lora", "ttt-linear", "naive-lora"])
def test_every_strategy_runs_the_recall_cli(tmp_path, capsys, strategy):
    from tttlab.models import tiny_llama
    _, tok = load_lm()
    tiny_llama(vocab_size=len(tok), hidden=64, layers=4).save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")
    (tmp_path / "doc.txt").write_text(TEXT)
    (tmp_path / "qa.json").write_text(json.dumps([{"question": "Who built it?", "answers": ["Ebba Skarrow"], "cloze": "built in 1861 by"}]))
    argv = [str(tmp_path / "doc.txt"), str(tmp_path / "qa.json"), "--strategy", strategy, "--model", str(tmp_path / "tiny"), "--epochs", "1", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["retention_loss_after_reset"] == out["retention_loss_before"] and out["learn_seconds"] > 0


def test_answers_and_table_print_for_any_mix_of_questions():
    from tttlab.recall import print_answers, recall_table
    reply = lambda text: {"text": text}
    no_cloze = {"question": "Who?", "answers": [], "cloze": None}
    with_cloze = {"question": "Where?", "answers": ["Harrowlin"], "cloze": "printed in the"}
    result = {"answers": [{"question": q, "base": reply("no idea"), "ttt": reply("in Harrowlin"), "in_context": None} for q in (no_cloze, with_cloze)],
              "cloze": [{"question": with_cloze, "base": reply("town"), "ttt": reply("Harrowlin Almanac")}]}
    out = io.StringIO()
    print_answers(result, file=out)
    blocks = out.getvalue().split("\nQ: ")[1:]
    assert "(expected: —)" in blocks[0] and "cloze" not in blocks[0]  # the cloze belongs to the second question
    assert "cloze '…printed in the'" in blocks[1] and "✓ 'Harrowlin Almanac'" in blocks[1]
    row = dict(strategy="lact", qa_ttt=0.5, cloze_ttt=None, learn_seconds=2.0, learn_tokens_per_s=10.0,
               retention_loss_before=2.0, retention_loss_after=2.1, retention_loss_after_reset=2.0)
    assert "| lact | 50% | — |" in recall_table([row])
