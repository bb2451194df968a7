"TTT-Linear beyond its notebook: generating after a context kept with `forward(..., use_cache=True)`."
import torch

from tttlab.models import tiny_llama
from tttlab.ttt_linear import TTTConfig, TTTModel

class IdsTokenizer:
    "A stand-in tokenizer whose text is the token ids themselves, so that answers can be compared."
    pad_token_id = None
    def decode(self, ids: torch.Tensor, skip_special_tokens: bool = True) -> str: return " ".join(map(str, ids.tolist()))

def test_generate_continues_a_kept_context():
    torch.manual_seed(0)
    tm = TTTModel(tiny_llama(), IdsTokenizer(), TTTConfig(placement="replace-mlp", last_k=1))  # the TTT layer reads too
    context, prompt = torch.randint(0, 512, (1, 12)), torch.randint(0, 512, (1, 5))
    whole = tm.generate(torch.cat([context, prompt], 1), max_new_tokens=6)
    tm(context[:, :7], use_cache=True); tm(context[:, 7:], use_cache=True)  # kept in two calls, with gradients on
    assert tm.generate(prompt, max_new_tokens=6) == whole
    assert tm.past.get_seq_length() == 12 and tm.context.shape == (1, 12)  # generating leaves the kept context as it was
    assert tm.generate(prompt, max_new_tokens=6) == whole
    tm.clear_context()
    assert tm.past is None and tm.context is None
