"Half-precision weights and gradients (a GPU's path, run small on the CPU): updates and unscaling lose nothing."
import pytest
import torch
from torch import nn

from tttlab.lact import LaCTConfig, LaCTUpdater
from tttlab.models import LearningConfig, tiny_llama
from tttlab.ttt_linear import LossScale, TTTConfig, TTTModel

def change(params: list[torch.Tensor], initial: list[torch.Tensor]) -> torch.Tensor:
    "Every entry's change since `initial`, in fp32, as one vector."
    return torch.cat([(p.detach().float() - p0.float()).flatten() for p, p0 in zip(params, initial)])

def test_fp32_fast_weights_are_their_own_master():
    up = LaCTUpdater(tiny_llama(layers=3), LearningConfig(precision="bf16"), LaCTConfig(last_k=2))
    assert all(w is p for w, p in zip(up.master, up.params))

@pytest.mark.parametrize("dtype,precision", [(torch.bfloat16, "bf16"), (torch.float16, "fp16")])
def test_half_fast_weights_move_like_fp32_ones(dtype, precision):
    torch.manual_seed(1)
    ids = torch.randint(0, 512, (1, 96))
    cfg = LearningConfig(learning_rate=2e-4, precision=precision)  # most steps are below half a bf16 ulp of a weight
    ref = LaCTUpdater(tiny_llama(layers=3), cfg, LaCTConfig(last_k=2))
    up = LaCTUpdater(tiny_llama(layers=3).to(dtype), cfg, LaCTConfig(last_k=2))
    ref.process_document([ids] * 4); up.process_document([ids] * 4)
    assert up.skipped_updates == 0 and all(w.dtype == torch.float32 for w in up.master)
    assert all(torch.equal(p.detach(), w.to(dtype)) for p, w in zip(up.params, up.master))
    d, d_ref = change(up.params, up.initial), change(ref.params, ref.initial)
    assert float(d @ d_ref / (d.norm() * d_ref.norm())) > 0.9  # in place in bf16 this was 0.48
    up.reset()
    assert all(torch.equal(p, p0) and torch.equal(w, p0.float()) for p, w, p0 in zip(up.params, up.master, up.initial))

def test_unscale_keeps_small_fp16_gradients():
    ls, w = LossScale(True), nn.Parameter(torch.zeros(3, dtype=torch.float16))
    w.grad = (torch.tensor([3e-7, 1.2345e-6, 4e-5]) * ls.scale).half()
    (g,) = ls.unscale([w])
    assert g.dtype == torch.float32 and torch.equal(g, w.grad.float() / 2 ** 16)
    assert not torch.equal((w.grad / ls.scale).float(), g)  # dividing in fp16 rounds the small ones away

def test_unscale_divides_fp32_gradients_in_place():
    ls, w = LossScale(True, init=4.0), nn.Parameter(torch.zeros(2))
    w.grad = torch.full((2,), 8.0)
    (g,) = ls.unscale([w])
    assert g is w.grad and torch.equal(g, torch.full((2,), 2.0))
    w.grad = torch.full((2,), float("inf"))
    assert ls.unscale([w]) is None and ls.scale == 2.0

def test_ttt_layers_stay_fp32_in_a_half_lm():
    tm = TTTModel(tiny_llama().to(torch.bfloat16), config=TTTConfig(last_k=1))
    assert {p.dtype for t in tm.ttt_layers for p in t.parameters()} == {torch.float32}
    assert {t.W_h.dtype for t in tm.ttt_layers} == {torch.float32}
