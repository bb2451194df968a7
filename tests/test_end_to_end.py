"""End to end with the real default model: PDF -> parse -> chunk -> learn -> clear -> Q&A, through the playground's
`Session` (the code path of the app and of `tttlab learn`). Prints the answers, memory and seconds per chunk."""
import resource
import time

import pytest

from tttlab.app import Session
from tttlab.document import PDFParser, sample_pdf_path, sample_questions

pytestmark = pytest.mark.slow


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_sample_pdf_learned_then_answered_with_default_model():
    pdf = sample_pdf_path().read_bytes()
    text, pages = PDFParser().parse(pdf)
    s = Session(None, "lact")  # the default model, LaCT with its tuned settings (RECALL_CONFIGS)
    doc = s.load(sample_pdf_path())
    assert (doc.page_count, doc.text) == (pages, text)
    assert sum((c.token_ids for c in doc.chunks), []) == s.tokenizer(text, add_special_tokens=False).input_ids
    assert len(doc.chunks) >= 1 and all(c.n_tokens <= s.config.chunk_size for c in doc.chunks)

    stamps = []
    t0 = time.perf_counter()
    m = s.learn(callback=lambda i, n, loss: stamps.append(time.perf_counter()))
    per_chunk = [b - a for a, b in zip([t0] + stamps, stamps)]
    assert len(per_chunk) == len(doc.chunks) * s.config.epochs
    assert s.context_cleared and m.final_loss < m.initial_loss

    rows = []
    for q in sample_questions():
        for prompt, n in ((q.question, 24), (q.cloze, 8)):
            r = s.ask(prompt, max_tokens=n)
            rows.append((prompt, q.is_correct(r.ttt.text), q.is_correct(r.base.text), r.ttt.text, r.base.text))
    print(f"\n{doc.n_tokens} tokens in {len(doc.chunks)} chunks; loss {m.initial_loss:.3f} -> {m.final_loss:.3f}; "
          f"{m.tokens_per_s:,.0f} tokens/s; seconds per chunk: mean {sum(per_chunk) / len(per_chunk):.2f}, "
          f"max {max(per_chunk):.2f}; peak RSS {peak_rss_mb():,.0f} MB")
    for prompt, ttt_ok, base_ok, ttt, base in rows:
        print(f"[ttt {'✓' if ttt_ok else '✗'} base {'✓' if base_ok else '✗'}] {prompt}\n    TTT : {ttt!r}\n    base: {base!r}")
    assert any(ttt_ok and not base_ok for _, ttt_ok, base_ok, _, _ in rows), "no answer shows the learned fact"

    s.reset()
    assert (s.state, s.history, s.context_cleared) == ("empty", [], False)
