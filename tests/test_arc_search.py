"Integration tests of the ARC program search: totality of every primitive, real ARC tasks, the CLI entry points."
import functools
import importlib.util
import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tttlab.arc_data import ARCFormatError, Task, as_grid, load_tasks, symmetry, task_solved
from tttlab.arc_search import (FITTERS_ROOT, FITTERS_STATE, GUIDE_PATH, KEEPS_SHAPE, PRIMITIVES, Context,
                               GuideError, Obj, adapt_guide, colour_perm, attract_to_walls, extend_period, fill_by_symmetry, fit_blocks, fit_count,
                               fit_fill_holes, fit_local_rule, fit_mosaic, fit_attract, fit_object_recolour, fit_panel_rule, fit_pieces,
                               fit_periodic, fit_resize, fit_rays, draw_rays, fit_stamps, fit_moves, fit_templates, stamp_objects,
                               move_objects, select_objects, complete_templates, MOVES, RAY_SETS, guide_costs, load_guide, make_solver, normalised, objects,
                               ANCHORS, EXTEND_MODES, act_on_cells, cell_keys, colour_order, extend_canvas, fill_placeholders, fit_cell_actions,
                               fit_cell_copies, fit_cell_summary, fit_colour_order, fit_extend, fit_line_modes, fit_placeholders, fit_scale_count, line_modes,
                               Found, copy_cells, partition, periods, rank_attempts, shape_rules, summarise_cells,
                               fit_cell_tree, overlay_rule, search, fit_search, cell_features, _CELL_FEATURES, fit_panel_lookup, panel_props,
                               solve_main, task_context, train_guide_main, attempt_programs, batch_of, pair_tensors)

torch.set_num_threads(1)

grids = st.tuples(st.integers(1, 30), st.integers(1, 30), st.integers(1, 10), st.floats(0, 1), st.integers(0, 2**31)).map(
    lambda a: np.where(np.random.default_rng(a[4]).random(a[:2]) < a[3], 0,
                       np.random.default_rng(a[4] + 1).integers(0, a[2], a[:2])).astype(np.int8))


def _check(v, tout):
    if v is None: return
    if tout == "grid":
        assert isinstance(v, np.ndarray) and v.dtype == np.int8
        as_grid(v)
    else:
        assert len(v) and all(isinstance(o, Obj) and o.mask.any() for o in v)


@pytest.mark.parametrize("name", [n for n, p in PRIMITIVES.items() if p.tin == "grid"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(g=grids, bg=st.integers(0, 9), new=st.integers(0, 9))
def test_grid_primitive_is_total(name, g, bg, new):
    p = PRIMITIVES[name]
    v = p.fn(g, Context(bg, new))
    _check(v, p.tout)
    if name in KEEPS_SHAPE and v is not None: assert v.shape == g.shape  # the search's last-step pruning relies on it


_OBJS_MAKERS = [n for n, p in PRIMITIVES.items() if p.tin == "grid" and p.tout == "objs"]  # objects(), by colour, between lines, ...
_OBJS_FILTERS = [n for n, p in PRIMITIVES.items() if p.tin == "objs" and p.tout == "objs"]


@pytest.mark.parametrize("name", [n for n, p in PRIMITIVES.items() if p.tin == "objs"])
@settings(max_examples=30, deadline=None)
@given(g=grids, bg=st.integers(0, 9), maker=st.sampled_from(_OBJS_MAKERS), then=st.sampled_from([None] + _OBJS_FILTERS))
def test_objs_primitive_is_total(name, g, bg, maker, then):
    "Every objs primitive, fed what every primitive that makes objects gives (directly, or after one that filters them)."
    ctx = Context(bg, (bg + 1) % 10)
    objs = PRIMITIVES[maker].fn(g, ctx)
    if objs is not None and then is not None: objs = PRIMITIVES[then].fn(objs, ctx)
    if objs is not None: _check(PRIMITIVES[name].fn(objs, ctx), PRIMITIVES[name].tout)


def test_every_objs_maker_is_fed_to_the_objs_primitives():
    assert {"objs_by_colour", "cells_between_lines", "objs_colour", "objs_multi_diag"} <= set(_OBJS_MAKERS)


_MAKERS = [lambda g, r: r, lambda g, r: np.tile(g, (2, 2))[:30, :30], lambda g, r: g[: max(1, g.shape[0] // 2)],
           lambda g, r: np.where(g == 0, 3, g).astype(np.int8)]


@settings(max_examples=25, deadline=None)
@given(a=grids, b=grids, test=grids, other=grids, maker=st.integers(0, len(_MAKERS) - 1), bg=st.integers(0, 9))
def test_fitters_are_total(a, b, test, other, maker, bg):
    f = _MAKERS[maker]
    cands, targets = [a, b], [f(a, other), f(b, other[::-1])]
    fallback = lambda *a: fit_local_rule(*a, max_extra=2, unseen=True)
    for fitter in FITTERS_ROOT + FITTERS_STATE + (normalised(functools.partial(fit_search, seconds=0.1)),) + (fallback, fit_cell_tree):
        for rule in fitter(cands, targets, [test], Context(bg, (bg + 1) % 10)):
            assert isinstance(rule.name, str) and len(rule.predictions) == 1
            as_grid(rule.predictions[0])


@settings(max_examples=40, deadline=None)
@given(states=st.lists(st.tuples(grids, grids), min_size=1, max_size=6), target=grids, bg=st.integers(0, 9))
def test_overlay_rule_is_total_and_reproduces_the_outputs(states, target, bg):
    vals = [list(s) for s in states] + [[target, target]]  # the target itself is a usable layer
    rule = overlay_rule(vals, [target], bg)
    if (target != bg).any(): assert rule is not None  # at worst: the target layer over a blank canvas
    if rule is not None:
        chosen, preds = rule
        assert len(chosen) <= 3 and len(preds) == 1
        as_grid(preds[0])


@given(g=grids, fixed=st.frozensets(st.integers(0, 9), max_size=3))
def test_colour_perm_is_a_permutation_that_keeps_the_fixed_colours(g, fixed):
    p = colour_perm(g, fixed)
    assert sorted(p.tolist()) == list(range(10)) and all(p[c] == c for c in fixed)


@settings(max_examples=40, deadline=None)
@given(g=grids, hole=st.integers(0, 9))
def test_fill_by_symmetry_is_total_and_only_fills_holes(g, hole):
    out = fill_by_symmetry(g, hole)
    if out is not None:
        as_grid(out)
        assert not (out == hole).any() and np.array_equal(out[g != hole], g[g != hole])


_RELATIONS = [n for n, p in PRIMITIVES.items() if p.family == "relations"]
_counts = lambda g: np.bincount(g.ravel(), minlength=10)


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9))
def test_relation_primitives_keep_what_they_promise(g, bg):
    ctx = Context(bg, (bg + 1) % 10)
    for name in _RELATIONS:
        out = PRIMITIVES[name].fn(g, ctx)
        if out is None: continue
        assert out.shape == g.shape and not np.array_equal(out, g), name  # a no-op is reported as not applicable
        if name.startswith(("drop_objs", "slide_to")):  # rigid moves: no cell is lost, created or overlapped
            assert np.array_equal(_counts(out), _counts(g)), name
        if name.startswith(("shoot_", "connect_")):  # lines only paint background, in colours already there
            assert np.array_equal(out[g != bg], g[g != bg]), name
            assert set(np.unique(out[g == bg])) <= set(np.unique(g)), name
        if name == "stamp_at_markers":  # stamps only add foreground: nothing is erased
            assert (out[g != bg] != bg).all()


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9))
def test_relation_primitives_commute_with_the_symmetries_they_should(g, bg):
    ctx = Context(bg, (bg + 1) % 10)
    f = lambda name, x: PRIMITIVES[name].fn(x, ctx)
    same = lambda a, b: (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
    assert same(f("connect_diag", g.T), None if (r := f("connect_diag", g)) is None else r.T)
    assert same(f("shoot_cross", g[:, ::-1]), None if (r := f("shoot_cross", g)) is None else r[:, ::-1])
    assert same(f("shoot_left", g[:, ::-1]), None if (r := f("shoot_right", g)) is None else r[:, ::-1])
    for a, b in (("recolour_by_shape", g[::-1]), ("recolour_by_shape8", g[::-1])):  # the key rule does not depend on where objects are
        assert (f(a, b) is None) == (f(a, g) is None)


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9), dirs=st.sampled_from(sorted(RAY_SETS)), stop=st.sampled_from([True, False, "hit"]))
def test_rays_only_paint_background_and_stop_paints_less(g, bg, dirs, stop):
    src = g == g.flat[0]
    out = draw_rays(g, bg, src, RAY_SETS[dirs], stop)
    if out is None:
        assert src.sum() > 60
        return
    assert out.shape == g.shape and np.array_equal(out[g != bg], g[g != bg])
    through = draw_rays(g, bg, src, RAY_SETS[dirs], False)
    assert not ((out != g) & (through == g)).any()  # a ray that stops is part of the ray that goes through
    many = (g != bg) & (np.cumsum(g != bg).reshape(g.shape) <= 60)  # sources of several colours, at most 60
    last, clash = draw_rays(g, bg, many, RAY_SETS[dirs], stop), draw_rays(g, bg, many, RAY_SETS[dirs], stop, clash=True)
    assert not ((clash != g) & (last == g)).any()  # where rays of two colours meet, the clash rule only paints less
    assert np.array_equal(clash[clash != g], last[clash != g])


@settings(max_examples=60, deadline=None)
@given(g=grids, hole=st.integers(0, 9), family=st.sampled_from(["rows", "cols", "tiles", "diagonals", "antidiagonals"]), p=st.integers(2, 9))
def test_extend_period_only_paints_holes_and_is_periodic(g, hole, family, p):
    out = extend_period(g, hole, family, p)
    if out is None: return
    as_grid(out)
    assert np.array_equal(out[g != hole], g[g != hole])
    assert np.array_equal(extend_period(out, hole, family, p), out)  # painting again changes nothing


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9), keep=st.booleans())
def test_attract_to_walls_is_total_and_moves_no_more_than_it_has(g, bg, keep):
    out = attract_to_walls(g, bg, keep)
    if out is None: return
    as_grid(out)
    assert out.shape == g.shape and (out != bg).sum() <= (g != bg).sum()  # cells move (or vanish), none is created


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9), multi=st.booleans(), who=st.sampled_from(["all", "largest", "others", "colour 1", "colour 2"]),
       how=st.sampled_from(MOVES), anchor=st.sampled_from([None, "largest", "colour 3"]), keep=st.booleans())
def test_object_moves_are_total_and_keep_the_cells(g, bg, multi, who, how, anchor, keep):
    objs = objects(g, bg, multi, True)
    out = move_objects(g, objs, who, how, anchor, keep)
    if out is None: return
    as_grid(out)
    assert out.shape == g.shape
    if not keep: assert (out != bg).sum() == (g != bg).sum()  # a move puts every cell somewhere free: none is lost or made
    assert all(any(o is p for p in objs) for o in select_objects(objs, who))


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9), turned=st.booleans(), radius=st.integers(-3, 3))
def test_stamps_and_templates_are_total(g, bg, turned, radius):
    out = complete_templates(g, bg, ("id", "rot90", "flip_lr") if turned else ("id",))
    if out is not None: as_grid(out); assert out.shape == g.shape and ((out == g) | (g == bg)).all()  # only background is painted
    objs = objects(g, bg, False, False)
    stamps = {(o.colours.tobytes(), o.mask.shape): {(radius, -radius): 7, (0, 0): 5} for o in objs}
    out = stamp_objects(g, objs, [(o.colours.tobytes(), o.mask.shape) for o in objs], stamps)
    if out is not None: as_grid(out); assert out.shape == g.shape


@pytest.mark.parametrize("name,tid", [("slide_to_smallest", "05f2a901"), ("stamp_at_markers", "88a10436"), ("connect_diag", "1f876c06")])
def test_relation_primitives_solve_real_training_tasks(name, tid):
    t = {t.id: t for t in load_tasks("training")}[tid]
    ctx = task_context(t)
    for i, o in list(t.train) + list(zip(t.test_inputs, t.test_outputs)): assert np.array_equal(PRIMITIVES[name].fn(i, ctx), o)
    assert task_solved(search(t, time_budget=3).attempts, t.test_outputs)


@pytest.mark.parametrize("tid", ["3de23699", "8f2ea7aa", "b94a9452"])
def test_reading_states_lazily_keeps_the_order(tid):
    "A guide that reads every state and gives back the task's own costs must leave the search exactly as it was."
    t = {t.id: t for t in load_tasks("training")}[tid]
    costs = guide_costs(load_guide(), t.train)
    plain, read = (search(t, costs, 4, time_budget=60, **kw) for kw in ({}, {"restate": lambda vals, outs: costs, "restate_depth": 3}))
    assert plain.nodes_to_first is not None and plain.nodes_to_first > 100  # the search loop found it, after real work
    assert (read.nodes_to_first, read.nodes_expanded) == (plain.nodes_to_first, plain.nodes_expanded)
    assert [str(f) for f in read.found] == [str(f) for f in plain.found]


_patient_local_rule = functools.partial(fit_local_rule, seconds=20)  # its 1 s default is the search's share; a busy CI core needs more


@pytest.mark.parametrize("fitter,tid", [(fit_mosaic, "3af2c5a8"), (fit_resize, "c59eb873"), (_patient_local_rule, "00d62c1b"),
                                        (fit_fill_holes, "0dfd9992"), (fit_pieces, "a87f7484"), (fit_count, "d631b094"),
                                        (fit_object_recolour, "810b9b61"), (fit_panel_rule, "cf98881b"), (fit_blocks, "cce03e0d"),
                                        (normalised(_patient_local_rule), "025d127b"), (fit_rays, "ded97339"), (fit_periodic, "05269061"),
                                        (fit_panel_rule, "75b8110e"), (normalised(fit_panel_rule), "bc1d5164"), (fit_resize, "d10ecb37"),
                                        (fit_object_recolour, "9edfc990"), (fit_pieces, "8efcae92"), (fit_attract, "1a07d186"),
                                        (fit_stamps, "0ca9ddb6"), (fit_stamps, "95990924"), (fit_moves, "a48eeaf7"),
                                        (fit_moves, "5521c0d9"), (fit_templates, "36d67576"), (fit_extend, "53b68214"),
                                        (fit_extend, "963e52fc"), (fit_scale_count, "b91ae062"), (fit_blocks, "c3e719e8"),
                                        (fit_placeholders, "321b1fc6"), (fit_placeholders, "e76a88a6"), (fit_cell_summary, "780d0b14"),
                                        (fit_cell_summary, "9f236235"), (fit_cell_actions, "29623171"), (fit_line_modes, "e26a3af2"),
                                        (fit_cell_copies, "8e5a5113"), (fit_cell_copies, "c444b776"), (fit_colour_order, "4be741c5"),
                                        (fit_extend, "eb281b96"), (fit_extend, "49d1d64f"), (fit_object_recolour, "d2abd087"),
                                        (fit_object_recolour, "44d8ac46"), (_patient_local_rule, "44d8ac46"),
                                        (_patient_local_rule, "694f12f3"), (_patient_local_rule, "3bdb4ada"),
                                        (_patient_local_rule, "d23f8c26"), (_patient_local_rule, "ce9e57f2"), (fit_panel_lookup, "6773b310"),
                                        (_patient_local_rule, "29c11459"), (_patient_local_rule, "868de0fa"),
                                        (_patient_local_rule, "e9afcf9a"), (_patient_local_rule, "7e0986d6"),
                                        (_patient_local_rule, "6c434453"), (_patient_local_rule, "42a50994")])
def test_fitters_solve_real_training_tasks(fitter, tid):
    t = {t.id: t for t in load_tasks("training")}[tid]
    rules = fitter([i for i, _ in t.train], [o for _, o in t.train], list(t.test_inputs), task_context(t))
    assert rules and task_solved([[p] for p in rules[0].predictions], t.test_outputs, 1)
    assert task_solved(search(t, time_budget=2).attempts, t.test_outputs)


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9))
def test_region_facts_describe_each_cells_region(g, bg):
    from scipy import ndimage
    F = cell_features(g, bg).reshape(*g.shape, -1)
    place, box, rows, cols, rhalf, chalf = (_CELL_FEATURES.index(n) for n in ("region_place", "region_box", "region_row_mod2",
                                                                          "region_col_mod2", "region_row_half", "region_col_half"))
    half = lambda v: np.where(v < (v.min() + v.max()) / 2, 0, np.where(v > (v.min() + v.max()) / 2, 2, 1))
    for c in np.unique(g):
        lab, n = ndimage.label(g == c)  # 4-connected, as the features' regions
        sizes = np.bincount(lab.ravel())[1:]
        for k in range(1, n + 1):
            ys, xs = np.nonzero(lab == k)
            f, h, w = F[ys, xs], np.ptp(ys) + 1, np.ptp(xs) + 1
            assert (f[:, box] == (2 if h * w != len(ys) else int(h != w))).all()
            assert (f[:, rows] == (ys - ys.min()) % 2).all() and (f[:, cols] == (xs - xs.min()) % 2).all()
            assert (f[:, rhalf] == half(ys)).all() and (f[:, chalf] == half(xs)).all()
            want = 3 if sizes.min() == sizes.max() else 0 if len(ys) == sizes.max() else 1 if len(ys) == sizes.min() else 2
            assert (f[:, place] == want).all()
            assert (f[:, _CELL_FEATURES.index("region_size_mod2")] == len(ys) % 2).all()


@settings(max_examples=60, deadline=None)
@given(g=grids, bg=st.integers(0, 9))
def test_nearest_end_halves_and_touching_size_read_the_cells_surroundings(g, bg):
    F = cell_features(g, bg).reshape(*g.shape, -1)
    h, w = g.shape
    for r, c in np.ndindex(h, w):
        ends = [(d, int(g[y, x])) for d, (y, x) in zip((c, w - 1 - c, r, h - 1 - r), ((r, 0), (r, w - 1), (0, c), (h - 1, c)))
                if d > 0 and g[y, x] != bg]
        near = {v for d, v in ends if d == min(d for d, _ in ends)}
        want = 10 if not ends else near.pop() if len(near) == 1 else 11
        assert F[r, c, _CELL_FEATURES.index("nearest_end")] == want
        assert F[r, c, _CELL_FEATURES.index("row_half")] == np.sign(2 * r - (h - 1)) + 1
        assert F[r, c, _CELL_FEATURES.index("col_half")] == np.sign(2 * c - (w - 1)) + 1
        near8 = [F[y, x, _CELL_FEATURES.index("region_size")] for y in range(r - 1, r + 2) for x in range(c - 1, c + 2)
                 if 0 <= y < h and 0 <= x < w and (y, x) != (r, c) and g[y, x] != bg]
        assert F[r, c, _CELL_FEATURES.index("touching_size")] == max(near8, default=0)


@settings(max_examples=40, deadline=None)
@given(g=grids, bg=st.integers(0, 9), grow=st.tuples(st.integers(0, 8), st.integers(0, 8)), anchor=st.sampled_from(sorted(ANCHORS)),
       mode=st.sampled_from(EXTEND_MODES))
def test_extend_canvas_is_total_and_keeps_the_input_in_place(g, bg, grow, anchor, mode):
    shape = (min(30, g.shape[0] + grow[0]), min(30, g.shape[1] + grow[1]))
    out = extend_canvas(g, shape, anchor, bg, mode)
    if shape == g.shape: assert out is None
    if out is None: return
    as_grid(out)
    y, x = ANCHORS[anchor](*shape, *g.shape)
    assert out.shape == shape and np.array_equal(out[y:y + g.shape[0], x:x + g.shape[1]], g)
    for dy, dx in periods(g):  # every period the grid obeys, it obeys where it overlaps itself
        h, w = g.shape
        assert np.array_equal(g[dy:, max(dx, 0):w + min(dx, 0)], g[:h - dy, max(-dx, 0):w - max(dx, 0)])


@settings(max_examples=40, deadline=None)
@given(g=grids, bg=st.integers(0, 9), acts=st.tuples(*[st.sampled_from(("keep", "clear", "fill"))] * 3))
def test_partition_rules_are_total_and_keep_the_separators(g, bg, acts):
    spans = partition(g, bg)
    for how in ("commonest", "rarest"):
        s = summarise_cells(g, bg, how)
        assert (s is None) == (spans is None)
        if s is not None: as_grid(s); assert s.shape == (len(spans[0]), len(spans[1]))
    props = panel_props(g, bg)
    assert (props is None) == (spans is None)
    if props is not None:  # a row per cell, counting its coloured cells, and its commonest colour is the summary's
        assert props[1] == (len(spans[0]), len(spans[1])) and props[0].shape == (props[1][0] * props[1][1], 7)
        assert props[0][:, 0].sum() == sum((g[a:b, c:d] != bg).sum() for (a, b) in spans[0] for (c, d) in spans[1])
        assert np.array_equal(props[0][:, 2].reshape(props[1]), summarise_cells(g, bg, "commonest"))
    keyed = cell_keys(g, bg)
    for plan in (None, ["rot90"] * len(keyed or [])):
        if (c := copy_cells(g, bg, plan)) is not None: as_grid(c); assert c.shape == g.shape
    out = act_on_cells(g, bg, dict(enumerate(acts)))
    if out is None: return
    as_grid(out)
    inside = np.zeros(g.shape, bool)
    for cell, _ in cell_keys(g, bg): inside[cell] = True
    assert np.array_equal(out[~inside], g[~inside])  # the separating lines are never painted


@settings(max_examples=40, deadline=None)
@given(g=grids, bg=st.integers(0, 9), axis=st.sampled_from((0, 1, None)), syms=st.sampled_from((("id",), ("id", "rot90", "flip_lr"))),
       erase=st.booleans())
def test_placeholders_stripes_and_colour_lists_are_total(g, bg, axis, syms, erase):
    for v in (line_modes(g, axis), fill_placeholders(g, bg, syms, erase)):
        if v is not None: as_grid(v); assert v.shape == g.shape
    order, along = colour_order(g, bg, axis, False)
    assert along in (0, 1) and sorted(order) == [c for c in range(10) if c != bg and (g == c).any()]
    rules = shape_rules([g], [np.tile(g, (2, 1))[:30]], [g], bg)
    assert all(len(shapes) == 1 and all(1 <= n <= 30 for n in shapes[0]) for shapes in rules.values())


def test_primitives_cover_the_issue():
    assert len(PRIMITIVES) >= 60
    fams = {p.family for p in PRIMITIVES.values()}
    assert {"geometry", "colour", "objects", "crop", "tile", "scale", "symmetry", "gravity", "fill", "lines", "count", "logic", "relations"} <= fams


def test_search_solves_real_training_tasks():
    by_id = {t.id: t for t in load_tasks("training")}
    for tid in ["007bbfb7", "0520fde7", "1e0a9b12", "1cf80156"]:
        r = search(by_id[tid], time_budget=5)
        assert task_solved(r.attempts, by_id[tid].test_outputs), tid
        assert r.nodes_to_first is not None and r.nodes_to_first <= r.nodes_expanded


def test_search_never_reads_test_outputs():
    t = {t.id: t for t in load_tasks("training")}["007bbfb7"]
    blind = Task(t.id, t.train, t.test_inputs, None)
    assert task_solved(search(blind, time_budget=5).attempts, t.test_outputs)


def test_guide_ranks_and_adapts_without_touching_the_shipped_weights():
    assert GUIDE_PATH.is_file() and GUIDE_PATH.stat().st_size < 2_000_000
    guide = load_guide()
    t = load_tasks("training")[0]
    before = [p.detach().clone() for p in guide.parameters()]
    tuned = adapt_guide(guide, t)
    with torch.no_grad(): static, adapted = (g(*batch_of([pair_tensors(t.train)]))[0] for g in (guide, tuned))
    costs = guide_costs(guide, t.train)
    for typ in ("grid", "objs"):  # within a type, a primitive the guide scores higher costs strictly less
        order = sorted((k for k, n in enumerate(guide.names) if PRIMITIVES[n].tin == typ), key=lambda k: -static[k])
        assert all(costs[guide.names[a]] < costs[guide.names[b]] for a, b in zip(order, order[1:]))
    assert not torch.allclose(static, adapted)  # the adapted copy scores differently
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters()))  # and the shipped guide did not move


def test_solve_main_json_summary_and_zero_crashes():
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert solve_main(["--split", "evaluation", "--smallest", "4", "--guide", "ttt", "--time-per-task", "1.5", "--json"]) == 0
    s = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert {"tasks", "solved", "pass_at_2", "seconds_per_task", "nodes_expanded", "crashes"} <= set(s)
    assert s["tasks"] == 4 and s["crashes"] == 0 and s["nodes_expanded"] > 0


def test_bad_arguments_raise_typed_errors(tmp_path):
    with pytest.raises(GuideError, match="unknown guide mode"): make_solver("magic")
    with pytest.raises(GuideError, match="train one with"): load_guide(tmp_path / "none.safetensors")
    (tmp_path / "ids.txt").write_text("not-a-task\n")
    with pytest.raises(ARCFormatError, match="not in arcagi"): solve_main(["--tasks", str(tmp_path / "ids.txt"), "--guide", "none"])


@pytest.mark.parametrize("argv,match", [(["--threads", "0"], "--threads must be at least 1"),
                                        (["--max-depth", "-1"], "max_depth must be 1 or more"),
                                        (["--ttt-steps", "-3"], "ttt_steps must be 0 or more"),
                                        (["--time-per-task", "0"], "time_per_task must be more than 0")])
def test_solve_main_refuses_impossible_settings(argv, match):
    with pytest.raises(GuideError, match=match): solve_main(["--guide", "none", "--limit", "1", "--quiet"] + argv)


@pytest.mark.parametrize("argv,match", [(["--synthetic", "0", "--harvest-seconds", "0"], "--synthetic must be at least 2"),
                                        (["--epochs", "0"], "--epochs must be at least 1"),
                                        (["--harvest-seconds", "-1"], "--harvest-seconds must be at least 0"),
                                        (["--threads", "0"], "--threads must be at least 1")])
def test_train_guide_main_refuses_impossible_settings(tmp_path, argv, match):
    out = tmp_path / "g.safetensors"
    with pytest.raises(GuideError, match=match): train_guide_main(argv + ["--out", str(out), "--quiet"])
    assert not out.exists()


@pytest.mark.parametrize("argv,match", [(["solve", "--method", "search", "--guide", "ttt", "--seed", "-1"], "--seed: must be a whole number from 0"),
                                        (["solve", "--method", "search", "--time-per-task", "inf"], "--time-per-task: must be a finite number"),
                                        (["train-guide", "--harvest-seconds", "nan"], "--harvest-seconds: must be a finite number")])
def test_the_cli_refuses_a_negative_seed_or_an_infinite_budget_before_any_task(capsys, argv, match):
    from tttlab.cli import main
    with pytest.raises(SystemExit) as e: main(["arc"] + argv)
    assert e.value.code == 2 and match in capsys.readouterr().err


def test_the_cli_reports_an_impossible_setting_in_one_line(capsys):
    from tttlab.cli import main
    assert main(["arc", "solve", "--method", "search", "--guide", "none", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "tttlab arc solve --method search: error: --threads must be at least 1, not 0"


def test_attempt_programs_names_the_near_miss_behind_a_guess():
    g1, g2 = np.array([[1, 2]], np.int8), np.array([[3, 4]], np.int8)
    bad = Task("contradiction", [(g1, g2), (g1, g1[:, ::-1])], [g1], [g2])  # no program maps both demonstrations
    r = search(bad, time_budget=5, max_depth=2)
    names = attempt_programs(r)
    assert r.found == [] and len(names) == len(r.attempts[0]) == 1 and names[0].startswith("near miss: ")


def test_guide_nodes_tool_compares_arms_on_tasks_answered_in_the_loop(tmp_path):
    root = Path(__file__).resolve().parents[1]
    tool = [sys.executable, str(root / "tools" / "arc_guide_nodes.py")]
    (tmp_path / "ids.txt").write_text("ce8d95cc  # a first program after a few nodes\n00576224  # a mosaic, before the loop\n")
    out = subprocess.run(tool + [str(tmp_path / "ids.txt"), "--arms", "none", "static", "--seconds", "2", "--out", str(tmp_path / "n.json")],
                         capture_output=True, text=True, check=True).stdout
    saved = json.loads((tmp_path / "n.json").read_text())
    assert saved["compared"] == ["ce8d95cc"] and "left out: 00576224" in out
    none, static = (saved["per_task"][a]["ce8d95cc"]["nodes_to_first"] for a in ("none", "static"))
    assert saved["ratios"]["static"]["total"] == none / static and "none → static" in out
    bad = subprocess.run(tool + ["ce8d95cc", "--arms", "ttt"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown arm 'ttt'" in bad.stderr


def test_guide_nodes_tool_tunes_on_neighbours_but_never_on_the_task_itself(tmp_path):
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("arc_guide_nodes", root / "tools" / "arc_guide_nodes.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    run = tmp_path / "run.json"  # chains as `tttlab arc solve --save` writes them, last step first
    run.write_text(json.dumps({"per_task": [{"id": "ce8d95cc", "programs": ["local_rule[colour]", "recolour{0→5} ∘ dedupe_lines"]},
                                            {"id": "e1baa8a4", "programs": ["left_half ∘ dedupe_lines", "dedupe_lines"]},
                                            {"id": "0692e18c", "programs": ["lookup[cells]"]}]}))
    chains = tool.split_chains([run])
    assert chains == {"ce8d95cc": ["dedupe_lines"], "e1baa8a4": ["dedupe_lines"]}  # no fitter, no recolouring; the shortest
    guide = load_guide()
    ev = {t.id: t for t in load_tasks("evaluation")}
    pool = [(i, ev[i], prog, tool.embedding(guide, ev[i].train)) for i, prog in chains.items()]
    assert [row[0] for row in tool.neighbours(guide, ev["ce8d95cc"], pool, 5)] == ["e1baa8a4"]
    assert torch.allclose(tool.embedding(guide, ev["ce8d95cc"].train).norm(), torch.tensor(1.0))
    tuned = tool.near_guide(guide, ev["ce8d95cc"], pool, 1)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), guide.parameters()))
    own_or_unknown = [("ce8d95cc", ev["ce8d95cc"], ["dedupe_lines"], None), ("e1baa8a4", ev["e1baa8a4"], ["no_such_step"], None)]
    assert tool.acted_guide(guide, ev["ce8d95cc"], own_or_unknown, 1) is guide  # nothing left to tune on
    acted = tool.acted_guide(guide, ev["ce8d95cc"], [("e1baa8a4", ev["e1baa8a4"], ["dedupe_lines"], None)], 1)
    assert any(not torch.equal(a, b) for a, b in zip(acted.parameters(), guide.parameters()))
    harvest = tmp_path / "harvest.json"
    harvest.write_text(json.dumps({"007bbfb7": ["self_kron"], "3c9b0459": ["rot180"]}))
    cmd = [sys.executable, str(root / "tools" / "arc_guide_nodes.py"), "ce8d95cc", "--seconds", "2"]
    subprocess.run(cmd + ["--arms", "static", "near:1", "near-split:1", "acted:1", "--harvest", str(harvest), "--split-runs", str(run),
                          "--out", str(tmp_path / "n.json")], capture_output=True, text=True, check=True)
    assert set(json.loads((tmp_path / "n.json").read_text())["per_task"]) == {"static", "near:1", "near-split:1", "acted:1"}
    bad = subprocess.run(cmd + ["--arms", "static", "near:1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "acted arms need --harvest" in bad.stderr
    assert tool.parse_arm("near-split:3") == ("near-split", 3) and tool.parse_arm("acted:8") == ("acted", 8)
    with pytest.raises(ValueError, match="K at least 1"): tool.parse_arm("near:0")


def test_guide_nodes_tool_reads_each_primitive_through_its_conjugate_in_every_view():
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("arc_guide_nodes", root / "tools" / "arc_guide_nodes.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    grids = [i for t in load_tasks("training")[:20] for i, _ in t.train[:2]]
    conj = tool.conjugates(grids)
    assert set(conj) == set(range(8)) and conj[0] == {n: n for n in PRIMITIVES}
    assert conj[4]["flip_lr"] == "flip_ud" and conj[4]["left_half"] == "top_half"  # 4: transposed
    assert conj[1]["shift_left"] == "shift_down" and conj[2]["fill_enclosed"] == "fill_enclosed"  # a quarter turn, a half turn
    task = load_tasks("evaluation")[0]
    x = task.train[0][0]
    for view, table in conj.items():  # each entry checked directly on a grid it was not found on
        for p, q in table.items():
            if PRIMITIVES[p].tin == PRIMITIVES[p].tout == "grid" and (v := PRIMITIVES[p].fn(x, Context())) is not None:
                assert np.array_equal(PRIMITIVES[q].fn(symmetry(x, view), Context()), symmetry(v, view)), (view, p, q)
    costs = tool.view_costs(load_guide(), task.train, conj)
    assert set(costs) == set(PRIMITIVES) and all(np.isfinite(c) for c in costs.values())
    assert tool.parse_arm("views") == ("views", 0)


def test_harvested_programs_file_must_map_ids_to_step_lists(tmp_path, capsys):
    from tttlab.arc_search import read_programs
    from tttlab.cli import main
    good, bad_json, a_list = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "list.json"
    good.write_text(json.dumps({"007bbfb7": ["self_kron"]})); bad_json.write_text("{not json"); a_list.write_text('["self_kron"]')
    assert read_programs(good) == {"007bbfb7": ["self_kron"]}
    for path, msg in ((bad_json, "cannot read harvested programs"), (a_list, "must hold a JSON object")):
        with pytest.raises(GuideError, match=msg): read_programs(path)
    assert main(["arc", "train-guide", "--programs", str(a_list), "--quiet"]) == 2 and "must hold a JSON object" in capsys.readouterr().err


def test_train_guide_main_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "g.safetensors"
    with redirect_stdout(io.StringIO()):
        assert train_guide_main(["--synthetic", "48", "--epochs", "1", "--harvest-seconds", "0", "--out", str(out), "--quiet"]) == 0
    assert load_guide(out).names == list(PRIMITIVES)


def test_fitter_sweep_tool_counts_a_fitter_against_a_saved_run(tmp_path):
    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "run.json"  # a saved run that solved nothing but 007bbfb7
    run.write_text(json.dumps({"per_task": [{"id": "007bbfb7", "solved": True}, {"id": "d631b094", "solved": False}]}))
    out = subprocess.run([sys.executable, str(root / "tools" / "arc_fitter_sweep.py"), "fit_count", "--against", str(run), "--procs", "1"],
                         capture_output=True, text=True, check=True).stdout
    n_right = int(out.split("right ")[1].split(",")[0])
    assert out.startswith("fit_count on 400 training tasks") and n_right > 0
    assert f"was not: {n_right}" in out  # every right answer is new against a run that solved none of them
    assert "d631b094" in out  # the count of one colour's cells as a row
    bad = subprocess.run([sys.executable, str(root / "tools" / "arc_fitter_sweep.py"), "fit_nothing"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no fitter 'fit_nothing'" in bad.stderr


@settings(max_examples=60, deadline=None)
@given(a=st.tuples(st.integers(1, 4), st.integers(1, 4)), b=st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
       sizes=st.lists(st.tuples(st.integers(2, 7), st.integers(2, 7)), min_size=2, max_size=4, unique=True))
def test_shape_rules_find_each_side_own_affine_rule(a, b, sizes):
    ins = [np.zeros(s, np.int8) for s in sizes]
    shapes = [(a[0] * h + b[0], a[1] * w + b[1]) for h, w in sizes]
    if min(map(min, shapes)) < 1 or (a, b) == ((1, 1), (0, 0)): return  # an output must exist and differ in shape
    outs = [np.zeros(s, np.int8) for s in shapes]
    test = np.zeros((5, 3), np.int8)
    want = (a[0] * 5 + b[0], a[1] * 3 + b[1])
    if min(want) < 1: return  # no valid test output
    rules = shape_rules(ins, outs, [test], 0)
    assert all(len(s) == 1 for s in rules.values())
    assert any(s == [want] for s in rules.values()) or len({h for h, _ in sizes}) == 1 or len({w for _, w in sizes}) == 1


def test_a_cell_kind_may_copy_some_of_the_time_and_keep_one_colour_otherwise():
    t = {t.id: t for t in load_tasks("training")}["c9f8e694"]  # grey cells take the colour at their row's left end; black stays black
    rules = fit_local_rule([i for i, _ in t.train], [o for _, o in t.train], list(t.test_inputs), task_context(t), max_extra=2, seconds=20, unseen=True)
    assert rules and rules[0].name == "local_rule[colour->copy row_left,unseen kept]"
    assert task_solved([[p] for p in rules[0].predictions], t.test_outputs, 1)


def test_a_cell_kind_may_copy_while_another_keeps_its_colour():
    t = {t.id: t for t in load_tasks("training")}["2204b7a8"]  # lone cells take the colour of the nearest edge line; the lines stay
    rules = _patient_local_rule([i for i, _ in t.train], [o for _, o in t.train], list(t.test_inputs), task_context(t))
    assert rules and rules[0].name == "local_rule[region_size->copy nearest_end]"
    assert task_solved([[p] for p in rules[0].predictions], t.test_outputs, 1)


def test_a_halo_around_pairs_reads_the_neighbours_largest_region():
    t = {t.id: t for t in load_tasks("training")}["b27ca6d3"]  # pairs get a halo, single cells do not; the test shows a cell beside a single one
    rules = fit_local_rule([i for i, _ in t.train], [o for _, o in t.train], list(t.test_inputs), task_context(t), max_extra=2, seconds=20, unseen=True)
    assert rules and rules[0].name == "local_rule[colour+touching_size,unseen kept]"
    assert task_solved([[p] for p in rules[0].predictions], t.test_outputs, 1)


def test_the_second_attempt_goes_to_another_kind_of_rule():
    g = lambda v: np.full((2, 2), v, np.int8)
    found = [Found(("local_rule[a]",), None, [g(1)], 2.0, 0, 1), Found(("local_rule[b]",), None, [g(2)], 2.0, 0, 1),
             Found(("keep_major", "bg_to_new"), (0, 5, 2, 3, 4, 5, 6, 7, 8, 9), [g(3)], 9.0, 0, 0)]
    assert [int(a[0, 0]) for a in rank_attempts(found, 1)[0]] == [1, 3]  # as short as the runner-up, and not another local rule
    longer = found[:2] + [Found(("keep_major", "bg_to_new", "flip_lr"), None, [g(3)], 9.0, 0, 0)]
    assert [int(a[0, 0]) for a in rank_attempts(longer, 1)[0]] == [1, 2]  # a longer program does not jump the queue


def test_agreement_counts_only_among_the_shortest_programs():
    g = lambda v: np.full((2, 2), v, np.int8)
    short = lambda v, name, cost: Found((name,), None, [g(v)], cost, 0, 1)
    composed = lambda v, name: Found(("keep_major", "drop_isolated", name), None, [g(v)], 1.0, 0, 1)
    found = [short(1, "local_rule[a]", 3.0), short(1, "local_rule[b]", 3.0), short(2, "local_rule[c]", 2.0),
             composed(2, "local_rule[d]"), composed(2, "local_rule[e]")]
    assert [int(a[0, 0]) for a in rank_attempts(found, 1)[0]] == [1, 2]  # two short programs agree on 1; longer ones add nothing to 2


@pytest.mark.parametrize("tid", ["ba97ae07", "91714a58"])
def test_longer_programs_and_guesses_do_not_push_the_answer_out(tid):
    t = {t.id: t for t in load_tasks("training")}[tid]  # composed programs agree on a wrong answer; a rule that guesses unseen cells is wrong
    r = search(t, guide_costs(load_guide(), t.train), 4, time_budget=20)
    assert task_solved(r.attempts, t.test_outputs)  # both used to rank the right answer third


@pytest.mark.parametrize("tid", ["aabf363d", "9565186b"])
def test_the_search_goes_on_past_answers_that_guess(tid):
    t = {t.id: t for t in load_tasks("training")}[tid]  # the first answers are a colour map with guessed entries, or fitted rules
    r = search(t, guide_costs(load_guide(), t.train), 4, time_budget=20)
    assert task_solved(r.attempts, t.test_outputs)


def aux_tool():
    "tools/arc_aux_ttt.py as a module, with torch's seed reset."
    spec = importlib.util.spec_from_file_location("arc_aux_ttt", Path(__file__).resolve().parents[1] / "tools" / "arc_aux_ttt.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    torch.manual_seed(0)
    return tool


def test_aux_ttt_tool_tunes_the_encoder_on_its_own_task_and_leaves_the_head():
    "The classic-TTT tool: tuning lowers the task's auxiliary loss, moves the encoder, and never touches the head."
    tool = aux_tool()
    guide = tool.AuxGuide(list(PRIMITIVES)).eval()
    task = {t.id: t for t in load_tasks("training", "arcagi")}["3c9b0459"]  # a rotation: every output keeps its input's shape
    batch = batch_of([pair_tensors(task.train)])
    tuned = tool.adapt_aux(guide, task, steps=8, lr=3e-3)
    with torch.no_grad(): before, after = float(guide.aux_loss(*batch)), float(tuned.aux_loss(*batch))
    assert after < before
    assert all(torch.equal(a, b) for a, b in zip(guide.head.parameters(), tuned.head.parameters()))
    assert not torch.equal(guide.pair[0].weight, tuned.pair[0].weight)
    assert guide.aux_loss(*batch_of([pair_tensors(task.train[:1])])) is None  # one pair has no other pairs to read


def test_latent_refinement_tool_is_the_frozen_guide_without_steps_and_meta_trains_through_them():
    "The latent-refinement tool: no steps gives the shipped guide's logits; steps lower each task's auxiliary loss; the step size gets a meta-gradient."
    tool = aux_tool()
    base = load_guide()
    g = tool.LatentGuide(list(PRIMITIVES), steps=2, step_size=0.1); g.load_state_dict(base.state_dict(), strict=False)
    task = {t.id: t for t in load_tasks("training", "arcagi")}["3c9b0459"]
    batch = batch_of([pair_tensors(task.train)])
    torch.nn.init.normal_(g.adapt.weight, std=0.1)
    g.steps = 0
    with torch.no_grad(): assert torch.equal(g.eval()(*batch), base(*batch))
    g.steps = 2
    planes, e = g.read_pairs(*batch[:2])
    shift = g.eval().refine(planes, e.detach(), batch[2], batch[3])
    with torch.no_grad():
        before = float(g.task_losses(planes, e, batch[2], batch[3], torch.zeros_like(shift))[0])
        after = float(g.task_losses(planes, e, batch[2], batch[3], shift)[0])
    assert after < before
    g.train(); torch.nn.functional.binary_cross_entropy_with_logits(g(*batch), torch.rand(1, len(PRIMITIVES))).backward()
    assert g.log_step.grad is not None and g.log_step.grad.abs().sum() > 0  # second order: the loss sees the step size


def test_aux_ttt_tool_compares_two_runs_on_the_tasks_both_answer_in_the_loop(tmp_path, monkeypatch, capsys):
    "`compare`: ratios over the tasks whose first program in both runs came from the search loop, with tasks better and worse."
    tool = aux_tool()
    monkeypatch.syspath_prepend(str(Path(tool.__file__).parent))  # as when the tool runs as a script
    row = lambda n, loop=True: {"nodes_to_first": n, "first_in_loop": loop, "program": "p"}
    ref = {"a": row(100), "b": row(50), "c": row(10, loop=False), "d": row(7)}
    arm = {"a": row(25), "b": row(100), "c": row(5)}  # c: a fitter answered in ref; d: not run in arm
    for name, rows in (("ref", ref), ("arm", arm)): (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    tool.compare_cmd(tool.argparse.Namespace(ref=tmp_path / "ref.json", arm=tmp_path / "arm.json"))
    out = json.loads(capsys.readouterr().out)
    assert out["compared"] == 2 and out["nodes"] == [150, 125] and (out["better"], out["worse"]) == (1, 1)
    assert out["total"] == pytest.approx(1.2) and out["geometric_mean"] == pytest.approx(2 ** 0.5) and out["median"] == pytest.approx(2.25)
