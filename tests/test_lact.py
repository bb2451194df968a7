"The trainer beyond its notebook: a chunk of a single token has nothing to predict and is left out."
import math

import pytest
import torch

from tttlab.lact import EmptyDocumentError, LaCTConfig, LaCTUpdater, TTTTrainer
from tttlab.lora import NaiveLoRA
from tttlab.models import Document, DocumentChunk, LearningConfig, tiny_llama
from tttlab.ttt_linear import TTTConfig, TTTLinearStrategy

def document(*sizes: int) -> Document:
    "A document of random-token chunks of the given sizes."
    torch.manual_seed(2)
    return Document(text="random tokens", chunks=[DocumentChunk(index=i, token_ids=torch.randint(0, 512, (n,)).tolist(), text="")
                                                 for i, n in enumerate(sizes)])

STRATEGIES = {
    "lact": lambda: LaCTUpdater(tiny_llama(layers=3), LearningConfig(learning_rate=0.05, precision="fp32"), LaCTConfig(last_k=2)),
    "ttt-linear": lambda: TTTLinearStrategy(tiny_llama(), LearningConfig(strategy="ttt-linear", learning_rate=1e-2, precision="fp32"),
                                            TTTConfig(last_k=1)),
    "naive-lora": lambda: NaiveLoRA(tiny_llama(), LearningConfig(strategy="naive-lora", precision="fp32"), rank=2, steps=2, piece=32),
}

@pytest.mark.parametrize("name", STRATEGIES)
def test_a_one_token_last_chunk_is_left_out(name):
    seen = []
    m = TTTTrainer(STRATEGIES[name]()).train_on_document(document(48, 48, 1), callback=lambda i, n, l: seen.append((i, n)))
    assert math.isfinite(m.initial_loss) and math.isfinite(m.final_loss), m
    assert m.skipped_updates == 0 and m.tokens == 96 and len(m.loss_history) == 2 and seen == [(0, 2), (1, 2)]

def test_a_document_of_single_tokens_raises():
    with pytest.raises(EmptyDocumentError, match="single token"): TTTTrainer(STRATEGIES["lact"]()).train_on_document(document(1, 1))
