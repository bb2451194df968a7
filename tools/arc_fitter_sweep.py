"""Run one ARC search fitter alone on every task of a split: how the 06b rules were chosen.

Usage: python tools/arc_fitter_sweep.py fit_rays [--split training] [--against run.json ...] [--procs 2]

A fitter learns a rule from a task's demonstrations and predicts its test outputs. The sweep counts the tasks
where it fits every demonstration, the tasks where its first rule is right on the test, and, given the `--save`
files of a solver run (`tttlab arc solve --method search ... --save run.json`), the right answers that run lacked.
A rule was kept only when it answered such a task. Use it on the training split only; the evaluation split is
for the final count.
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from tttlab import arc_search as S
from tttlab.arc_data import Task, load_tasks


def sweep_one(fitter_name: str, # a `fit_*` function of `tttlab.arc_search`
              seconds: float, # time limit of `fit_local_rule` (the one slow fitter)
              task: Task, # the task
             ) -> dict:
    "One task: the rules the fitter fits, whether the first is right, and the seconds it took."
    fitter = getattr(S, fitter_name)
    if fitter is S.fit_local_rule: fitter = functools.partial(fitter, seconds=seconds)
    t0 = time.perf_counter()
    rules, right = S.fit_task(fitter, task)
    return {"id": task.id, "rules": [r.name for r in rules], "right": right, "seconds": time.perf_counter() - t0}


def solved_in(paths: list[Path]) -> set[str]:
    "Task ids a saved solver run (or several halves of one) solved."
    return {r["id"] for p in paths for r in json.loads(Path(p).read_text())["per_task"] if r["solved"]}


def main(argv: list[str] | None = None) -> int:
    "Print the sweep's counts, and the tasks it newly answers when a saved run is given."
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fitter", help="the name of a fitter, e.g. fit_rays")
    p.add_argument("--split", default="training", choices=("training", "evaluation"))
    p.add_argument("--against", type=Path, nargs="*", default=[], help="--save files of a solver run to compare with")
    p.add_argument("--seconds", type=float, default=3.0, help="time limit of the local-rule fitter per task")
    p.add_argument("--procs", type=int, default=2)
    args = p.parse_args(argv)
    if not callable(getattr(S, args.fitter, None)): p.error(f"tttlab.arc_search has no fitter {args.fitter!r}")
    tasks = load_tasks(args.split, "arcagi")
    with Pool(args.procs) as pool:
        rows = pool.map(functools.partial(sweep_one, args.fitter, args.seconds), tasks, chunksize=4)
    fits = [r for r in rows if r["rules"]]
    right = [r for r in fits if r["right"]]
    secs = [r["seconds"] for r in rows]
    print(f"{args.fitter} on {len(tasks)} {args.split} tasks: fits {len(fits)}, right {len(right)}, "
          f"{np.mean(secs):.3f} s per task on average, slowest {max(secs):.2f} s")
    if args.against:
        done = solved_in(args.against)
        new = [r for r in right if r["id"] not in done]
        print(f"right where the run in {', '.join(map(str, args.against))} was not: {len(new)}")
        for r in new: print(f"  {r['id']}  {r['rules'][0]}")
    return 0


if __name__ == "__main__": raise SystemExit(main())
