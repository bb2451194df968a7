"""Classic TTT (Sun et al. 2020) for the ARC guide. The guide is trained jointly with a self-supervised
auxiliary task that shares its encoder: predict each demonstration's output (cells when the shape is kept, the colour
histogram always) from its input and the leave-one-out embedding of the task's other pairs. At test time the encoder
is tuned on that auxiliary loss over the task's own demonstrations (and colour/D4 views of them); the head is frozen.

Usage: python tools/arc_aux_ttt.py train G.pt --programs PROGRAMS.json
       python tools/arc_aux_ttt.py run TASKS.txt G.pt static|aux OUT.json [--split training] [--seconds 8]"""
from __future__ import annotations
import argparse, copy, json
from pathlib import Path
import numpy as np
from tqdm import tqdm
import torch, torch.nn as nn, torch.nn.functional as F
from tttlab.arc_search import PRIMITIVES, Guide, batch_of, guide_costs, guide_quality, label_vector, pair_tensors, read_programs, search, synthetic_examples
from tttlab.arc_data import load_tasks, read_task_ids

class AuxGuide(Guide):
    "A guide with an output decoder that shares its pair encoder."
    def __init__(self, names: list[str], width: int = 16, hidden: int = 128, dec: int = 16):
        super().__init__(names, width, hidden)
        self.dec_in = nn.Conv2d(11, dec, 3, padding=1)
        self.film = nn.Linear(hidden, 2 * dec)
        self.dec_mid = nn.Conv2d(dec, dec, 3, padding=1)
        self.dec_out = nn.Conv2d(dec, 10, 1)
        self.hist = nn.Linear(hidden + 10, 10)

    def _crop(self, canv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        "Canvases cropped to the largest grid in the batch, and where they are inside a grid."
        inside = canv >= 0
        rows, cols = inside.any(3).any((0, 1)), inside.any(2).any((0, 1))
        h, w = int(rows.nonzero().max()) + 1, int(cols.nonzero().max()) + 1
        return canv[..., :h, :w], inside[..., :h, :w]

    def embed(self, canv: torch.Tensor, sc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        "Each pair's embedding (the guide's own encoder), with the cropped canvases, masks and planes."
        canv, inside = self._crop(canv)
        planes = torch.cat([F.one_hot(canv[:, 0].clamp(min=0).long(), 10).permute(0, 3, 1, 2) * inside[:, :1],
                            F.one_hot(canv[:, 1].clamp(min=0).long(), 10).permute(0, 3, 1, 2) * inside[:, 1:],
                            inside], 1).float()
        h = self.conv(planes)
        return self.pair(torch.cat([h.amax((2, 3)), h.mean((2, 3)), sc], 1)), canv, inside, planes

    def aux_loss(self, canv: torch.Tensor, sc: torch.Tensor, task_index: torch.Tensor, n_tasks: int) -> torch.Tensor | None:
        "Cross-entropy of each pair's output cells (same shape) and colour histogram, read from its input and its task's other pairs."
        e, canv, inside, planes = self.embed(canv, sc)
        tot = torch.zeros(n_tasks, e.shape[1]).index_add_(0, task_index, e)
        cnt = torch.bincount(task_index, minlength=n_tasks)
        ok = cnt[task_index] > 1
        if not ok.any(): return None
        loo = (tot[task_index] - e) / (cnt[task_index] - 1).clamp(min=1)[:, None]
        loo, canv, inside, planes = loo[ok], canv[ok], inside[ok], planes[ok]
        hin = torch.cat([planes[:, :10], inside[:, :1].float()], 1)
        gam, bet = self.film(loo).chunk(2, 1)
        z = F.relu(self.dec_in(hin) * (1 + gam[..., None, None]) + bet[..., None, None])
        logits = self.dec_out(F.relu(self.dec_mid(z)))
        same = (inside[:, 0] == inside[:, 1]).flatten(1).all(1)
        loss = torch.zeros(())
        if same.any():
            tgt = canv[same, 1].long()
            m = inside[same, 1]
            ce = F.cross_entropy(logits[same], tgt.clamp(min=0), reduction="none")
            loss = loss + (ce * m).sum() / m.sum()
        inh = planes[:, :10].sum((2, 3)); inh = inh / inh.sum(1, keepdim=True)
        outh = planes[:, 10:20].sum((2, 3)); outh = outh / outh.sum(1, keepdim=True)
        hl = -(outh * F.log_softmax(self.hist(torch.cat([loo, inh], 1)), 1)).sum(1).mean()
        return loss + hl

def train_joint(guide: AuxGuide, examples: list, epochs: int, batch_size: int = 64, lr: float = 2e-3, aux_weight: float = 1.0, seed: int = 0) -> list:
    "Train the guide's labels (BCE) and the auxiliary task together; returns (bce, aux) per step."
    opt = torch.optim.Adam(guide.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    guide.train(); hist = []
    steps = [(e, b) for e in range(epochs) for b in range(0, len(examples), batch_size)]
    for e, b in tqdm(steps, desc="joint", mininterval=10):
        if b == 0: order = torch.randperm(len(examples), generator=g).tolist()
        chunk = [examples[j] for j in order[b:b + batch_size]]
        batch = batch_of([x for x, _ in chunk])
        bce = F.binary_cross_entropy_with_logits(guide(*batch), torch.stack([y for _, y in chunk]))
        aux = guide.aux_loss(*batch)
        loss = bce + aux_weight * (aux if aux is not None else 0)
        if not torch.isfinite(loss): continue
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(guide.parameters(), 1.0); opt.step()
        hist.append((bce.item(), aux.item() if aux is not None else float("nan")))
    guide.eval()
    return hist

def views(pairs: list, n: int, rng: np.random.Generator) -> list:
    "n colour-permuted / D4-turned copies of the demonstration pairs (background colour 0 kept)."
    out = []
    for _ in range(n):
        perm = np.concatenate([[0], 1 + rng.permutation(9)]).astype(np.int8)
        k, fl = int(rng.integers(4)), bool(rng.integers(2))
        f = lambda g: np.ascontiguousarray(np.rot90(g[:, ::-1] if fl else g, k))
        out.append([(perm[f(i)], perm[f(o)]) for i, o in pairs])
    return out

def adapt_aux(guide: AuxGuide, task, steps: int = 4, lr: float = 1e-3, n_views: int = 8, seed: int = 0, train_head: bool = False) -> AuxGuide:
    "A copy of the guide whose encoder (not its head) is tuned on the auxiliary loss over the task's demonstrations and views of them."
    tuned = copy.deepcopy(guide)
    rng = np.random.default_rng(seed)
    tasks = [list(task.train)] + views(task.train, n_views, rng)
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
    train_joint(g, synth[nv:] + real * 10, a.epochs, aux_weight=a.aux_weight)
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
