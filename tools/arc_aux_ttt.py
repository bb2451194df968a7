"""Classic TTT (Sun et al. 2020) for the ARC guide. The guide is trained jointly with a self-supervised
auxiliary task that shares its encoder: predict each demonstration's output (cells when the shape is kept, the colour
histogram always) from its input and the leave-one-out embedding of the task's other pairs. At test time the encoder
is tuned on that auxiliary loss over the task's own demonstrations (and colour/D4 views of them); the head is frozen.

Usage: python tools/arc_aux_ttt.py train G.pt --programs PROGRAMS.json
       python tools/arc_aux_ttt.py run TASKS.txt G.pt static|aux OUT.json [--split training] [--seconds 8]"""
from __future__ import annotations
import argparse, copy, json
from pathlib import Path
from typing import Callable
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from tttlab.arc_search import (PRIMITIVES, Guide, batch_of, guide_costs, guide_quality, label_vector, pair_tensors, read_programs, search,
                               synthetic_examples, train_guide)
from tttlab.arc_data import Augmentation, Grid, Task, load_tasks, random_colour_permutation, read_task_ids

class AuxGuide(Guide):
    "A guide with an output decoder that shares its pair encoder."
    def __init__(self, names: list[str], width: int = 16, hidden: int = 128, dec: int = 16):
        super().__init__(names, width, hidden)
        self.dec_in = nn.Conv2d(11, dec, 3, padding=1)
        self.film = nn.Linear(hidden, 2 * dec)
        self.dec_mid = nn.Conv2d(dec, dec, 3, padding=1)
        self.dec_out = nn.Conv2d(dec, 10, 1)
        self.hist = nn.Linear(hidden + 10, 10)

    def aux_loss(self, canv: torch.Tensor, sc: torch.Tensor, task_index: torch.Tensor, n_tasks: int) -> torch.Tensor | None:
        "Cross-entropy of each pair's output cells (same shape) and colour histogram, read from its input and its task's other pairs."
        planes, e = self.read_pairs(canv, sc)
        tot = torch.zeros(n_tasks, e.shape[1]).index_add_(0, task_index, e)
        cnt = torch.bincount(task_index, minlength=n_tasks)
        ok = cnt[task_index] > 1
        if not ok.any(): return None
        loo = (tot[task_index] - e) / (cnt[task_index] - 1).clamp(min=1)[:, None]
        loo, planes = loo[ok], planes[ok]
        hin = torch.cat([planes[:, :10], planes[:, 20:21]], 1)  # the input's colours and shape
        gam, bet = self.film(loo).chunk(2, 1)
        z = F.relu(self.dec_in(hin) * (1 + gam[..., None, None]) + bet[..., None, None])
        logits = self.dec_out(F.relu(self.dec_mid(z)))
        same = (planes[:, 20] == planes[:, 21]).flatten(1).all(1)  # the output keeps the input's shape
        loss = torch.zeros(())
        if same.any():
            m = planes[same, 21]  # the output's cells
            ce = F.cross_entropy(logits[same], planes[same, 10:20].argmax(1), reduction="none")
            loss = loss + (ce * m).sum() / m.sum()
        inh = planes[:, :10].sum((2, 3)); inh = inh / inh.sum(1, keepdim=True)
        outh = planes[:, 10:20].sum((2, 3)); outh = outh / outh.sum(1, keepdim=True)
        hl = -(outh * F.log_softmax(self.hist(torch.cat([loo, inh], 1)), 1)).sum(1).mean()
        return loss + hl

def aux_extra(weight: float) -> Callable[[AuxGuide, tuple], torch.Tensor | None]:
    "The auxiliary loss, weighted, as `train_guide`'s `extra`."
    return lambda guide, batch: None if (a := guide.aux_loss(*batch)) is None else weight * a

def views(task: Task, n: int, rng: np.random.Generator) -> list[list[tuple[Grid, Grid]]]:
    "The demonstrations of `n` random augmentations of the task: a colour permutation (0 kept) and a symmetry."
    out = []
    for _ in range(n):
        perm = random_colour_permutation(rng)
        k, flipped = int(rng.integers(4)), bool(rng.integers(2))
        out.append(Augmentation(4 + (k + 3) % 4 if flipped else k, tuple(int(c) for c in perm)).apply_task(task).train)  # k quarter turns of the (flipped) grid
    return out

def adapt_aux(guide: AuxGuide, task: Task, steps: int = 4, lr: float = 1e-3, n_views: int = 8, seed: int = 0, train_head: bool = False) -> AuxGuide:
    "A copy of the guide whose encoder (not its head) is tuned on the auxiliary loss over the task's demonstrations and views of them."
    tuned = copy.deepcopy(guide)
    rng = np.random.default_rng(seed)
    tasks = [list(task.train)] + views(task, n_views, rng)
    batch = batch_of([pair_tensors(p) for p in tasks])
    params = [p for n, p in tuned.named_parameters() if train_head or not n.startswith("head")]
    opt = torch.optim.Adam(params, lr=lr)
    tuned.train()
    for _ in range(steps):
        loss = tuned.aux_loss(*batch)
        if loss is None or not torch.isfinite(loss): break
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    return tuned.eval()


def load_aux(path: str) -> AuxGuide:
    "A jointly trained guide from `train`."
    g = AuxGuide(list(PRIMITIVES)); g.load_state_dict(torch.load(path)); return g.eval()

def train_cmd(a) -> None:
    "Train a guide jointly with the auxiliary task on self-generated tasks and harvested programs."
    torch.set_num_threads(1); torch.manual_seed(0)
    train = load_tasks("training", "arcagi"); names = list(PRIMITIVES); by_id = {t.id: t for t in train}
    real = [(pair_tensors(by_id[i].train), label_vector(names, p)) for i, p in read_programs(a.programs).items() if i in by_id]
    synth = synthetic_examples(train, a.synthetic, names, 0, progress=False)
    nv = max(1, len(synth) // 20)
    g = AuxGuide(names)
    train_guide(g, synth[nv:] + real * 10, a.epochs, extra=aux_extra(a.aux_weight))
    print(json.dumps(guide_quality(g, synth[:nv])))
    torch.save(g.state_dict(), a.out)

def run_cmd(a) -> None:
    "Nodes until the first program per task, with the guide as it is (static) or tuned on the auxiliary loss (aux)."
    torch.set_num_threads(1)
    by_id = {t.id: t for t in load_tasks(a.split, "arcagi")}
    guide, rows = load_aux(a.guide), {}
    for tid in read_task_ids(a.tasks):
        task = by_id[tid]
        g = adapt_aux(guide, task, steps=a.steps, lr=a.lr) if a.arm == "aux" else guide
        r = search(task, guide_costs(g, task.train), 4, time_budget=a.seconds,
                   restate=lambda v, o: guide_costs(g, list(zip(v, o))), restate_depth=2)
        rows[tid] = {"nodes_to_first": r.nodes_to_first, "first_in_loop": r.first_in_loop, "program": str(r.found[0]) if r.found else None}
        print(tid, rows[tid], flush=True)
    Path(a.out).write_text(json.dumps(rows))

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0]); sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train"); t.add_argument("out"); t.add_argument("--programs", required=True)
    t.add_argument("--synthetic", type=int, default=48000); t.add_argument("--epochs", type=int, default=4); t.add_argument("--aux-weight", type=float, default=1.0)
    r = sub.add_parser("run"); r.add_argument("tasks"); r.add_argument("guide"); r.add_argument("arm", choices=("static", "aux")); r.add_argument("out")
    r.add_argument("--split", default="evaluation"); r.add_argument("--seconds", type=float, default=40.0)
    r.add_argument("--steps", type=int, default=4); r.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args()
    (train_cmd if a.cmd == "train" else run_cmd)(a)
