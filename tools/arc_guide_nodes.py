"""Nodes until the first program, with and without the ARC search guide: the 06b guide-against-unguided tables.

Usage: python tools/arc_guide_nodes.py IDS_FILE_OR_IDS ... [--split evaluation] [--arms none static views ttt:0 near:8]
                                       [--seconds 40] [--guide-path G] [--harvest H.json] [--split-runs RUN.json ...]
                                       [--out nodes.json]

Each task is searched once per arm, as `tttlab arc solve --method search` does (depth 4, the guide also reading the
grid states of depth 1 and 2), with a budget long enough that the clock cuts (almost) nothing: `none` orders the
primitives uniformly, `static` by the guide, `ttt:SEED` by a copy of the guide adapted to the task with that seed.
The `views` arm adapts nothing: it averages the guide's log-probabilities over the task's 8 rotations and
reflections, each primitive read through its conjugate in that view (`flip_lr` in a transposed view is `flip_ud`;
the table is found by running the primitives on ARC training grids), the ensemble that an adaptation for
consistency across views would distil into the guide. Two arms tune a copy of the guide on other tasks' programs
instead, the K whose demonstrations the guide embeds closest to this task's (4 full-batch steps at lr 1e-3):
`near:K` draws them from the harvested training programs (`--harvest`, the file `tttlab arc train-guide --programs`
writes), `near-split:K` also from the chains that a saved run found for the other tasks of the split
(`--split-runs`, files of `tttlab arc solve --save`; they are checked against the demonstrations only). `acted:K`
runs every harvested program on this task's own inputs and tunes on the K whose input-output pairs the guide embeds
closest to the task's, each with its program as the label. Only the tasks on which every arm's first program came
from the search loop are compared: a fitter that answers before or after the loop does not depend on the order. The
ratios are against the first arm.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tttlab.arc_data import Task, load_tasks, read_task_ids, symmetry
from tttlab.arc_search import (PRIMITIVES, Context, Grid, Guide, batch_of, label_vector, load_guide, make_solver, paint,
                               pair_tensors, ranked_costs, read_programs, run_program, search, task_context, train_guide,
                               write_json)
from tttlab.models import TTTLabError

NEAR_MODES = ("near", "near-split", "acted")
VIEWS = range(8)  # the symmetries of the square, as `symmetry` numbers them (0: the task as it is, 4: transposed)


def parse_arm(arm: str) -> tuple[str, int]:
    "An arm's guide mode and number: `none`, `static`, `views`, `ttt:SEED`, `near:K`, `near-split:K` or `acted:K`."
    mode, _, num = arm.partition(":")
    if mode in ("none", "static", "views") and not num: return mode, 0
    if mode == "ttt" and num.isdigit() or mode in NEAR_MODES and num.isdigit() and int(num) >= 1: return mode, int(num)
    raise ValueError(f"unknown arm {arm!r}; use none, static, views, ttt:SEED, near:K, near-split:K or acted:K (K at least 1)")


@torch.no_grad()
def embedding(guide: Guide, pairs: list[tuple[Grid, Grid]]) -> torch.Tensor:
    "The guide's reading of a task's pairs: its `pair` layer averaged over them, unit length."
    return F.normalize(guide.eval().read_pairs(*pair_tensors(pairs))[1].mean(0), dim=0)


def split_chains(runs: list[Path]) -> dict[str, list[str]]:
    "Each task's shortest chain of primitives among the programs a saved run found (a final recolouring dropped)."
    out = {}
    for run in runs:
        for row in json.loads(Path(run).read_text())["per_task"]:
            steps = [[s for s in reversed(p.split(" ∘ ")) if not s.startswith("recolour{")] for p in row["programs"]]
            if chains := [c for c in steps if c and all(s in PRIMITIVES for s in c)]: out[row["id"]] = min(chains, key=len)
    return out


def neighbours(guide: Guide, # the static guide
               task: Task, # the task to search
               pool: list[tuple[str, Task, list[str], torch.Tensor]], # (id, task, program, embedding) to draw from
               k: int, # how many
              ) -> list[tuple[str, Task, list[str], torch.Tensor]]:
    "The k pool tasks the guide embeds closest to `task`, nearest first; the task itself is never one of them."
    pool = [row for row in pool if row[0] != task.id]
    sims = torch.stack([row[3] for row in pool]) @ embedding(guide, task.train)
    return [pool[j] for j in sims.topk(min(k, len(pool))).indices.tolist()]


def tuned_copy(guide: Guide, # the static guide
               examples: list[tuple[list[tuple[Grid, Grid]], list[str]]], # (pairs, program) to tune on
              ) -> Guide:
    "A copy of the guide tuned for 4 full-batch steps at lr 1e-3 on the examples' programs."
    tuned = copy.deepcopy(guide)
    batch = [(pair_tensors(pairs), label_vector(tuned.names, prog)) for pairs, prog in examples]
    train_guide(tuned, batch, epochs=4, batch_size=len(batch), lr=1e-3, seed=0, progress=False)
    return tuned.eval()


def near_guide(guide: Guide, # the static guide
               task: Task, # the task to search
               pool: list[tuple[str, Task, list[str], torch.Tensor]], # (id, task, program, embedding) to draw from
               k: int, # neighbours
              ) -> Guide:
    "A copy of the guide tuned on the programs of the task's k `neighbours`, each with its own task's pairs."
    return tuned_copy(guide, [(t.train, prog) for _, t, prog, _ in neighbours(guide, task, pool, k)])


def acted_guide(guide: Guide, # the static guide
                task: Task, # the task to search
                pool: list[tuple[str, Task, list[str], torch.Tensor]], # (id, task, program, embedding) to draw from
                k: int, # programs
               ) -> Guide:
    "A copy of the guide tuned on the k pool programs whose effect on this task's own inputs it embeds closest to the task's pairs."
    ctx, own, scored = task_context(task), embedding(guide, task.train), []
    for pid, _, prog, _ in pool:
        if pid == task.id or not all(s in PRIMITIVES for s in prog): continue
        outs = [run_program(prog, x, ctx) for x, _ in task.train]
        if any(o is None for o in outs) or all(np.array_equal(o, x) for o, (x, _) in zip(outs, task.train)): continue
        pairs = [(x, o) for (x, _), o in zip(task.train, outs)]
        scored.append((float(embedding(guide, pairs) @ own), pairs, prog))
    best = sorted(scored, key=lambda row: -row[0])[:k]
    return tuned_copy(guide, [(pairs, prog) for _, pairs, prog in best]) if best else guide


def conjugates(grids: list[Grid], # probe grids
              ) -> dict[int, dict[str, str]]:
    "For each view g and primitive p, a primitive q of p's types with q(g(x)) = g(p(x)) on every probe grid, where one exists."
    ctx = Context()
    def seen(name, x):  # p's value on x as a grid: an objs input comes from one extractor, an objs output is painted
        p = PRIMITIVES[name]
        v = x if p.tin == "grid" else PRIMITIVES["objs_multi_diag"].fn(x, ctx)
        v = None if v is None else p.fn(v, ctx)
        if isinstance(v, list): return paint(v, v[0].canvas, v[0].bg) if v else None
        return v
    key = lambda v: None if v is None else (v.shape, v.tobytes())
    base = {n: [seen(n, x) for x in grids] for n in PRIMITIVES}
    out = {0: {n: n for n in PRIMITIVES}}
    for view in VIEWS[1:]:
        moved = {n: tuple(key(seen(n, symmetry(x, view))) for x in grids) for n in PRIMITIVES}
        out[view] = {}
        for n, p in PRIMITIVES.items():
            want = tuple(key(None if v is None else symmetry(v, view)) for v in base[n])
            if sum(w is not None for w in want) < 10: continue  # too few grids tell
            same = [q for q, qp in PRIMITIVES.items() if (qp.tin, qp.tout) == (p.tin, p.tout) and moved[q] == want]
            if same: out[view][n] = n if n in same else same[0]
    return out


@torch.no_grad()
def view_costs(guide: Guide, # the static guide
               pairs: list[tuple[Grid, Grid]], # demonstration pairs (or a state's values and the outputs)
               conj: dict[int, dict[str, str]], # `conjugates`
              ) -> dict[str, float]:
    "Search costs from the guide's log-probabilities averaged over the pairs' 8 views, each primitive read through its conjugate there."
    logits = guide.eval()(*batch_of([pair_tensors([(symmetry(i, v), symmetry(o, v)) for i, o in pairs]) for v in VIEWS]))
    col = {n: k for k, n in enumerate(guide.names)}
    score = {}
    for typ in ("grid", "objs"):
        names = [n for n, p in PRIMITIVES.items() if p.tin == typ]
        logp = logits[:, [col[n] for n in names]].log_softmax(1)
        pos = {n: j for j, n in enumerate(names)}
        for n in names:
            got = [float(logp[k, pos[conj[v][n]]]) for k, v in enumerate(VIEWS) if n in conj[v]]
            score[n] = sum(got) / len(got)
    return ranked_costs(score)


def views_solver(guide: Guide, # the static guide
                 seconds: float, # search budget per task
                ) -> Callable[[Task], None]:
    "A solver like `make_solver('static')` whose costs come from `view_costs` at the root and at the grid states it reads."
    conj = conjugates([i for t in load_tasks("training")[:100] for i, _ in t.train[:2]])
    log = {}
    def solve(task: Task) -> None:
        log[task.id] = search(task, view_costs(guide, task.train, conj), 4, time_budget=seconds,
                              restate=lambda vals, outs: view_costs(guide, list(zip(vals, outs)), conj), restate_depth=2)
    solve.log = log
    return solve


def ratios(ref: list[int], # the first arm's nodes, one per compared task
           arm: list[int], # another arm's nodes on the same tasks
          ) -> dict[str, float]:
    "How many times fewer nodes `arm` needs than `ref`: the ratio of totals, the geometric mean and the median of per-task ratios."
    per = [a / b for a, b in zip(ref, arm)]
    return {"total": sum(ref) / sum(arm), "geometric_mean": math.exp(statistics.fmean(map(math.log, per))),
            "median": statistics.median(per)}


def main(argv: list[str] | None = None) -> int:
    "Search each task in each arm, print the nodes until the first program per task and the ratios against the first arm."
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="+", help="a file of task ids (one a line, # starts a comment), or the ids themselves")
    p.add_argument("--split", default="evaluation", choices=("training", "evaluation"), help="ARC-AGI-1 split")
    p.add_argument("--arms", nargs="+", default=["none", "static"], help="none, static, views, ttt:SEED, near:K, near-split:K or acted:K; the first is the reference")
    p.add_argument("--seconds", type=float, default=40.0, help="search budget per task and arm")
    p.add_argument("--guide-path", type=Path, default=None, help="a guide checkpoint (default: the shipped one)")
    p.add_argument("--harvest", type=Path, default=None, help="harvested training programs for the near arms (JSON: task id -> program)")
    p.add_argument("--split-runs", type=Path, nargs="*", default=[], help="saved runs on the split whose chains join the pool of near-split arms")
    p.add_argument("--out", type=Path, default=None, help="write every arm's per-task counts and programs here (JSON)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        arms = {a: parse_arm(a) for a in args.arms}
        ids = read_task_ids(args.tasks[0]) if len(args.tasks) == 1 and Path(args.tasks[0]).is_file() else args.tasks
        by_id = {t.id: t for t in load_tasks(args.split)}
        if missing := [i for i in ids if i not in by_id]: raise ValueError(f"not ARC-AGI-1 {args.split} tasks: {' '.join(missing)}")
        guide = load_guide(args.guide_path) if any(m != "none" for m, _ in arms.values()) else None
        solvers = {a: views_solver(guide, args.seconds) if m == "views" else make_solver(m, guide, args.seconds, seed=s)
                   for a, (m, s) in arms.items() if m not in NEAR_MODES}
        pools = {}
        if any(m in NEAR_MODES for m, _ in arms.values()):
            if args.harvest is None or not args.harvest.is_file(): raise ValueError("near, near-split and acted arms need --harvest, a file of harvested training programs")
            training = {t.id: t for t in load_tasks("training")}
            pools["near"] = [(i, training[i], prog) for i, prog in read_programs(args.harvest).items() if i in training]
            pools["near-split"] = pools["near"] + [(i, by_id[i], prog) for i, prog in split_chains(args.split_runs).items() if i in by_id]
            pools["acted"] = pools["near"]
            pools = {m: [(*row, embedding(guide, row[1].train)) for row in pool] for m, pool in pools.items()}
    except (ValueError, TTTLabError, OSError, KeyError) as e: p.error(str(e))
    rows = {a: {} for a in arms}
    width = {a: max(12, len(a) + 2) for a in arms}
    cell = lambda v, w: (f"{'none':>{w}}" if v["nodes_to_first"] is None
                         else f"{v['nodes_to_first']:>{w - 1},}" + " *"[not v["first_in_loop"]])  # * : not from the loop
    print("task      " + "".join(f"{a:>{width[a]}}" for a in arms), flush=True)
    for tid in ids:
        for a, (mode, num) in arms.items():
            tune = acted_guide if mode == "acted" else near_guide
            solve = solvers[a] if a in solvers else make_solver("static", tune(guide, by_id[tid], pools[mode], num), args.seconds)
            solve(by_id[tid])
            r = solve.log[tid]
            rows[a][tid] = {"nodes_to_first": r.nodes_to_first, "nodes_expanded": r.nodes_expanded,
                            "first_in_loop": r.first_in_loop, "program": str(r.found[0]) if r.found else None}
        print(f"{tid:10}" + "".join(cell(rows[a][tid], width[a]) for a in arms), flush=True)
    compared = [t for t in ids if all(rows[a][t]["first_in_loop"] for a in arms)]
    left = [t for t in ids if t not in compared]
    print(f"{len(compared)} of {len(ids)} tasks compared: every arm's first program came from the search loop"
          + (f" (* or none: it did not); left out: {' '.join(left)}" if left else ""))
    ref, *others = arms
    nodes = {a: [rows[a][t]["nodes_to_first"] for t in compared] for a in arms}
    summary = {}
    for a in others:
        if not compared: break
        summary[a] = ratios(nodes[ref], nodes[a])
        print(f"{ref} → {a}: {sum(nodes[ref]):,} → {sum(nodes[a]):,} nodes; fewer: {summary[a]['total']:.2f}× in total, "
              f"{summary[a]['geometric_mean']:.2f}× on the geometric mean, {summary[a]['median']:.2f}× on the median")
    if args.out is not None:
        write_json(args.out, {"split": args.split, "seconds": args.seconds, "arms": list(arms), "compared": compared,
                              "ratios": summary, "per_task": rows})
    return 0


if __name__ == "__main__": raise SystemExit(main())
