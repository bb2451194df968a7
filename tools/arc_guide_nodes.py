"""Nodes until the first program, with and without the ARC search guide: the 06b guide-against-unguided tables.

Usage: python tools/arc_guide_nodes.py IDS_FILE_OR_IDS ... [--split evaluation] [--arms none static ttt:0]
                                       [--seconds 40] [--guide-path G] [--out nodes.json]

Each task is searched once per arm, as `tttlab arc solve --method search` does (depth 4, the guide also reading
the grid states of depth 1 and 2), with a budget long enough that the clock cuts (almost) nothing: `none` orders
the primitives uniformly, `static` by the guide, `ttt:SEED` by a copy of the guide adapted to the task with that
seed. Only the tasks on which every arm's first program came from the search loop are compared: a fitter that
answers before or after the loop does not depend on the order. The ratios are against the first arm.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from tttlab.arc_data import load_tasks, read_task_ids
from tttlab.arc_search import load_guide, make_solver, write_json
from tttlab.models import TTTLabError


def parse_arm(arm: str) -> tuple[str, int]:
    "An arm's guide mode and seed: `none`, `static` or `ttt:SEED`."
    mode, _, seed = arm.partition(":")
    if mode in ("none", "static") and not seed: return mode, 0
    if mode == "ttt" and seed.isdigit(): return mode, int(seed)
    raise ValueError(f"unknown arm {arm!r}; use none, static or ttt:SEED")


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
    p.add_argument("--arms", nargs="+", default=["none", "static"], help="none, static or ttt:SEED; the first is the reference")
    p.add_argument("--seconds", type=float, default=40.0, help="search budget per task and arm")
    p.add_argument("--guide-path", type=Path, default=None, help="a guide checkpoint (default: the shipped one)")
    p.add_argument("--out", type=Path, default=None, help="write every arm's per-task counts and programs here (JSON)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        arms = {a: parse_arm(a) for a in args.arms}
        ids = read_task_ids(args.tasks[0]) if len(args.tasks) == 1 and Path(args.tasks[0]).is_file() else args.tasks
        by_id = {t.id: t for t in load_tasks(args.split)}
        if missing := [i for i in ids if i not in by_id]: raise ValueError(f"not ARC-AGI-1 {args.split} tasks: {' '.join(missing)}")
        guide = load_guide(args.guide_path) if any(m != "none" for m, _ in arms.values()) else None
        solvers = {a: make_solver(m, guide, args.seconds, seed=s) for a, (m, s) in arms.items()}
    except (ValueError, TTTLabError) as e: p.error(str(e))
    rows = {a: {} for a in arms}
    print("task      " + "".join(f"{a:>12}" for a in arms), flush=True)
    for tid in ids:
        for a, solve in solvers.items():
            solve(by_id[tid])
            r = solve.log[tid]
            rows[a][tid] = {"nodes_to_first": r.nodes_to_first, "nodes_expanded": r.nodes_expanded,
                            "first_in_loop": r.first_in_loop, "program": str(r.found[0]) if r.found else None}
        shown = [f"{'none':>12}" if v["nodes_to_first"] is None else f"{v['nodes_to_first']:>11,}" + " *"[not v["first_in_loop"]]
                 for v in (rows[a][tid] for a in arms)]
        print(f"{tid:10}" + "".join(shown), flush=True)
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
