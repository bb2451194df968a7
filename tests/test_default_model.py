"Integration tests with the real default model, SmolLM2-135M-Instruct, loaded offline."
import time

import torch

from tttlab.document import load_document, sample_pdf_path
from tttlab.models import default_cache_path, load_lm, load_tokenizer


def test_default_model_knows_paris():
    model, tok = load_lm()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad(): out = model.generate(ids, max_new_tokens=20, do_sample=False)
    reply = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply, reply


def test_cached_load_is_fast():
    load_lm()  # makes sure the safetensors cache exists
    assert (default_cache_path() / "model.safetensors").exists()
    t0 = time.perf_counter()
    model, _ = load_lm()
    seconds = time.perf_counter() - t0
    print(f"cached load: {seconds:.2f} s")
    assert seconds < 5, seconds
    assert model.config.num_hidden_layers == 30 and next(model.parameters()).dtype == torch.float32


def test_sample_chunks_with_default_tokenizer():
    tok = load_tokenizer()
    doc = load_document(sample_pdf_path(), tok, chunk_size=64)
    assert sum((c.token_ids for c in doc.chunks), []) == tok(doc.text, add_special_tokens=False).input_ids
    assert all(c.n_tokens <= 64 for c in doc.chunks)
