"""Two kinds of test-time training for the ARC guide, both through a self-supervised auxiliary task: predict each
demonstration's output (cells when the shape is kept, the colour histogram always) from its input and the leave-one-out
embedding of the task's other pairs.

- Classic TTT (Sun et al. 2020): the guide is trained jointly with the auxiliary task, which shares its encoder. At test
  time the encoder is tuned on that loss over the task's own demonstrations (and colour/D4 views of them); the head is
  frozen.
- Meta-learned latent refinement (as in latent program networks): the shipped guide is frozen. A decoder, a step size and
  a zero-initialised read-out are trained *through* a few gradient steps that move each task's embedding to lower its
  own auxiliary loss, and the head reads the moved embedding. With no steps it is the shipped guide exactly.

Usage: python tools/arc_aux_ttt.py train G.pt --programs PROGRAMS.json [--latent-steps 2 --synthetic 24000 --epochs 1 --seed 1]
       python tools/arc_aux_ttt.py run TASKS.txt G.pt static|aux|latent OUT.json [--split training] [--seconds 8]
       python tools/arc_aux_ttt.py compare STATIC.json TUNED.json"""
from __future__ import annotations
import argparse, copy, json, math
from pathlib import Path
from typing import Callable
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from tttlab.arc_search import (PRIMITIVES, Guide, batch_of, guide_costs, guide_quality, label_vector, load_guide, pair_tensors, read_programs, search,
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

    def decode(self, planes: torch.Tensor, e: torch.Tensor, task_index: torch.Tensor, n_tasks: int,
               shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        "Per pair that has other pairs to read: its task, its masked cell cross-entropies, their mask, its histogram cross-entropy."
        tot, cnt = task_sums(e, task_index, n_tasks)
        ok = cnt[task_index] > 1
        if not ok.any(): return None
        loo = (tot[task_index] - e) / (cnt[task_index] - 1).clamp(min=1)[:, None]
        if shift is not None: loo = loo + shift[task_index]  # a per-task offset of the embedding (LatentGuide)
        loo, planes = loo[ok], planes[ok]
        hin = torch.cat([planes[:, :10], planes[:, 20:21]], 1)  # the input's colours and shape
        gam, bet = self.film(loo).chunk(2, 1)
        z = F.relu(self.dec_in(hin) * (1 + gam[..., None, None]) + bet[..., None, None])
        logits = self.dec_out(F.relu(self.dec_mid(z)))
        same = (planes[:, 20] == planes[:, 21]).flatten(1).all(1)  # the output keeps the input's shape
        m = planes[:, 21] * same[:, None, None]  # the output's cells, where they line up with the input's
        ce = F.cross_entropy(logits, planes[:, 10:20].argmax(1), reduction="none") * m
        inh = planes[:, :10].sum((2, 3)); inh = inh / inh.sum(1, keepdim=True)
        outh = planes[:, 10:20].sum((2, 3)); outh = outh / outh.sum(1, keepdim=True)
        return task_index[ok], ce, m, -(outh * F.log_softmax(self.hist(torch.cat([loo, inh], 1)), 1)).sum(1)

    def aux_loss(self, canv: torch.Tensor, sc: torch.Tensor, task_index: torch.Tensor, n_tasks: int) -> torch.Tensor | None:
        "Cross-entropy of each pair's output cells (same shape) and colour histogram, read from its input and its task's other pairs."
        if (d := self.decode(*self.read_pairs(canv, sc), task_index, n_tasks)) is None: return None
        _, ce, m, hl = d
        return (ce.sum() / m.sum() if m.sum() > 0 else torch.zeros(())) + hl.mean()

def task_sums(e: torch.Tensor, task_index: torch.Tensor, n_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    "Each task's sum of pair embeddings, and its number of pairs."
    return torch.zeros(n_tasks, e.shape[1]).index_add_(0, task_index, e), torch.bincount(task_index, minlength=n_tasks)

class LatentGuide(AuxGuide):
    "A frozen guide whose task embedding is refined by gradient steps on the task's own auxiliary loss; the steps are meta-trained."
    def __init__(self, names: list[str], steps: int = 2, step_size: float = 4.0, hidden: int = 128):
        super().__init__(names, hidden=hidden)
        self.steps = steps  # inner gradient steps (0: the frozen guide exactly)
        self.register_buffer("trained_steps", torch.tensor(steps))
        self.log_step = nn.Parameter(torch.full((hidden,), math.log(step_size)))
        self.adapt = nn.Linear(hidden, hidden, bias=False)  # how the head reads the refinement; zero at first
        nn.init.zeros_(self.adapt.weight)

    def task_losses(self, planes: torch.Tensor, e: torch.Tensor, task_index: torch.Tensor, n_tasks: int, shift: torch.Tensor) -> torch.Tensor | None:
        "Each task's auxiliary loss with its embedding offset by `shift` (0 for a task of one pair)."
        if (d := self.decode(planes, e, task_index, n_tasks, shift)) is None: return None
        ti, ce, m, hl = d
        cell = torch.zeros(n_tasks).index_add_(0, ti, ce.sum((1, 2))) / torch.zeros(n_tasks).index_add_(0, ti, m.sum((1, 2))).clamp(min=1)
        return cell + torch.zeros(n_tasks).index_add_(0, ti, hl) / torch.bincount(ti, minlength=n_tasks).clamp(min=1)

    def refine(self, planes: torch.Tensor, e: torch.Tensor, task_index: torch.Tensor, n_tasks: int) -> torch.Tensor:
        "Each task's embedding offset after `steps` gradient steps on its own auxiliary loss (differentiated through while training)."
        with torch.enable_grad():
            shift = torch.zeros(n_tasks, e.shape[1], requires_grad=True)
            for _ in range(self.steps):
                if (losses := self.task_losses(planes, e, task_index, n_tasks, shift)) is None: break
                g, = torch.autograd.grad(losses.sum(), shift, create_graph=self.training)
                if not torch.isfinite(g).all(): break  # a non-finite step never reaches the head
                shift = shift - self.log_step.exp() * g
        return shift if self.training else shift.detach()

    def forward(self, canv: torch.Tensor, sc: torch.Tensor, task_index: torch.Tensor, n_tasks: int) -> torch.Tensor:
        "One logit per primitive, read from each task's pooled embedding and its refinement."
        planes, e = self.read_pairs(canv, sc)
        tot, cnt = task_sums(e, task_index, n_tasks)
        return self.head(tot / cnt.clamp(min=1)[:, None] + self.adapt(self.refine(planes, e, task_index, n_tasks)))

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
    "A guide from `train`: jointly trained (AuxGuide), or the shipped guide with a meta-trained refinement (LatentGuide)."
    state = torch.load(path)
    g = LatentGuide(list(PRIMITIVES), int(state["trained_steps"])) if "trained_steps" in state else AuxGuide(list(PRIMITIVES))
    g.load_state_dict(state); return g.eval()

def train_cmd(a) -> None:
    "Train a guide jointly with the auxiliary task, or (--latent-steps) meta-train a refinement on top of the frozen shipped guide."
    torch.set_num_threads(1); torch.manual_seed(0)
    train = load_tasks("training", "arcagi"); names = list(PRIMITIVES); by_id = {t.id: t for t in train}
    real = [(pair_tensors(by_id[i].train), label_vector(names, p)) for i, p in read_programs(a.programs).items() if i in by_id]
    synth = synthetic_examples(train, a.synthetic, names, a.seed, progress=False)
    nv = max(1, len(synth) // 20)
    if a.latent_steps:
        g = LatentGuide(names, a.latent_steps); g.load_state_dict(load_guide().state_dict(), strict=False)
        for n, q in g.named_parameters(): q.requires_grad_(n.split(".")[0] not in ("conv", "pair", "head"))
    else: g = AuxGuide(names)
    train_guide(g, synth[nv:] + real * 10, a.epochs, extra=aux_extra(a.aux_weight))
    report = {"val": guide_quality(g, synth[:nv])}
    if a.latent_steps:
        g.steps = 0; report["val_without_steps"] = guide_quality(g, synth[:nv]); g.steps = a.latent_steps
        report["mean_step_size"] = float(g.log_step.detach().exp().mean())
    print(json.dumps(report))
    torch.save(g.state_dict(), a.out)

def run_cmd(a) -> None:
    "Nodes until the first program per task: the guide as it is (static), its encoder tuned (aux) or its embedding refined (latent)."
    torch.set_num_threads(1)
    by_id = {t.id: t for t in load_tasks(a.split, "arcagi")}
    guide, rows = load_aux(a.guide), {}
    if isinstance(guide, LatentGuide): guide.steps = int(guide.trained_steps) if a.arm == "latent" else 0
    elif a.arm == "latent": raise SystemExit(f"{a.guide} has no refinement: train it with --latent-steps")
    for tid in read_task_ids(a.tasks):
        task = by_id[tid]
        g = adapt_aux(guide, task, steps=a.steps, lr=a.lr) if a.arm == "aux" else guide
        r = search(task, guide_costs(g, task.train), 4, time_budget=a.seconds,
                   restate=lambda v, o: guide_costs(g, list(zip(v, o))), restate_depth=2)
        rows[tid] = {"nodes_to_first": r.nodes_to_first, "first_in_loop": r.first_in_loop, "program": str(r.found[0]) if r.found else None}
        print(tid, rows[tid], flush=True)
    Path(a.out).write_text(json.dumps(rows))

def compare_cmd(a) -> None:
    "Ratios of nodes until the first program, `ref` over `arm`, on the tasks whose first program in both came from the search loop."
    from arc_guide_nodes import ratios  # tools/ is on the path when this file runs as a script
    ref, arm = (json.loads(Path(f).read_text()) for f in (a.ref, a.arm))
    both = [t for t in ref if t in arm and ref[t]["first_in_loop"] and arm[t]["first_in_loop"]]
    r, m = [ref[t]["nodes_to_first"] for t in both], [arm[t]["nodes_to_first"] for t in both]
    print(json.dumps({"compared": len(both), "nodes": [sum(r), sum(m)], **ratios(r, m),
                      "better": sum(y < x for x, y in zip(r, m)), "worse": sum(y > x for x, y in zip(r, m))}))

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0]); sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train"); t.add_argument("out"); t.add_argument("--programs", required=True)
    t.add_argument("--synthetic", type=int, default=48000); t.add_argument("--epochs", type=int, default=4); t.add_argument("--aux-weight", type=float, default=1.0)
    t.add_argument("--latent-steps", type=int, default=0); t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run"); r.add_argument("tasks"); r.add_argument("guide"); r.add_argument("arm", choices=("static", "aux", "latent")); r.add_argument("out")
    r.add_argument("--split", default="evaluation"); r.add_argument("--seconds", type=float, default=40.0)
    r.add_argument("--steps", type=int, default=4); r.add_argument("--lr", type=float, default=1e-3)
    c = sub.add_parser("compare"); c.add_argument("ref"); c.add_argument("arm")
    a = p.parse_args()
    {"train": train_cmd, "run": run_cmd, "compare": compare_cmd}[a.cmd](a)
