"`NaiveLoRA` runs under `TTTTrainer` with its default config and skips a step whose gradient is not finite."
import math

import torch

from tttlab.lact import TTTTrainer
from tttlab.lora import NaiveLoRA
from tttlab.models import Document, DocumentChunk, tiny_llama

torch.set_num_threads(1)  # on a shared 2-core machine two threads spin against other processes and crawl


def _ids(n: int = 24) -> torch.Tensor:
    return torch.randint(0, 64, (1, n), generator=torch.Generator().manual_seed(0))


def test_trainer_runs_with_default_config():
    s = NaiveLoRA(tiny_llama(vocab_size=64), rank=4, steps=2, piece=8)
    assert s.config.strategy == "naive-lora"
    doc = Document(text="tokens", chunks=[DocumentChunk(index=0, token_ids=_ids()[0].tolist(), text="tokens")])
    m = TTTTrainer(s).train_on_document(doc)
    assert len(m.loss_history) == s.config.epochs and m.skipped_updates == 0 and m.weight_delta > 0


def test_non_finite_gradient_is_skipped():
    s = NaiveLoRA(tiny_llama(vocab_size=64), rank=4, steps=3, piece=8)
    hook = s.layers[0].B.register_hook(lambda g: torch.full_like(g, math.inf))  # a finite loss with an Inf gradient
    loss = s.learn_chunk(_ids())
    assert math.isfinite(loss) and s.skipped_updates == 3
    assert all(torch.equal(p, p0) for p, p0 in zip(s.params, s.initial))  # A and B did not move, so stay finite
    hook.remove()
    s.learn_chunk(_ids())
    assert s.skipped_updates == 3 and s.weight_delta() > 0 and all(torch.isfinite(p).all() for p in s.params)
