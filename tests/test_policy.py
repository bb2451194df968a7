"Integration tests of tttlab.policy_ppo: real tiny Llama models, a real LaCT strategy, the real CLI."
import contextlib
import dataclasses
import io
import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import AutoTokenizer

from tttlab.lact import LaCTConfig, LaCTUpdater
from tttlab.models import LearningConfig, TTTLabError, default_model_dir, tiny_llama
from tttlab.policy_ppo import (COSTS, TrainedPolicy, greedy_actions, FEATURES_VERSION, MODEL_FEATURES, BudgetError, BudgetPacer, CacheMismatchError, CacheSettings,
                               EmptyCorpusError, FileHistory, GAIN_MODELS, GainRanker, GainRegressor, OutcomeCache, PIDLagrangian, PolicyEnsemble, PonderError,
                               PonderPolicy, PPOConfig, UnknownActionError, UpdateThreshold, best_random_action,
                               build_cache, check_budget, compare_methods, cross_validated_actions, cross_validated_scores, feature_overhead,
                               file_chunks, file_outcomes, fit_to_budget, fixed_chooser, guard_mode, learning_start,
                               main, noise_ceiling, oracle_actions, parse_action, random_actions, read_chunk, read_with_prefix, rollout,
                               refresh_features, run_online, score, source_files, split_corpus, static_names, stdlib_root, suffix_loss,
                               synthetic_episodes, target_reliability, train_policy)


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(default_model_dir())


@pytest.fixture(scope="module")
def split():
    return split_corpus(source_files(), seed=0, root=stdlib_root())


def lact(tok, seed=0):
    "A real LaCT strategy on a real tiny Llama."
    model = tiny_llama(vocab_size=len(tok), hidden=64, layers=2, seed=seed)
    return LaCTUpdater(model, LearningConfig(strategy="lact", learning_rate=3e-2, precision="fp32"), LaCTConfig(last_k=1))


def test_user_errors_are_typed():
    for bad in (0, -2, float("inf"), 0.5):
        with pytest.raises(BudgetError): check_budget(bad)
    with pytest.raises(UnknownActionError, match="UPDATE_4"): parse_action("UPDATE_8")
    with pytest.raises(UnknownActionError): parse_action(True)
    with pytest.raises(EmptyCorpusError): split_corpus(["a.py"])
    with pytest.raises(PonderError, match="unknown budget guard"): guard_mode("loose")
    assert all(issubclass(e, TTTLabError) for e in (BudgetError, UnknownActionError, EmptyCorpusError, CacheMismatchError))


def test_empty_corpus_folder(tmp_path):
    (tmp_path / "tiny.py").write_text("x = 1\n")  # below the size window
    with pytest.raises(EmptyCorpusError, match="no \\*.py files"): source_files(tmp_path)


def test_split_is_by_file_and_seeded(split):
    files = source_files()
    assert split == split_corpus(files[::-1], seed=0, root=stdlib_root())
    assert not set(split.train) & set(split.test) and not set(split.val) & set(split.test)
    assert len(split.train) + len(split.val) + len(split.test) == len(files)


def test_cached_outcomes_equal_online_with_reset(tok, split):
    "The cache is exactly online TTT when the weights reset after every decision, for one following chunk or two."
    path = split.train[1]
    rec = file_outcomes(lact(tok), tok, path, chunk_size=48, max_chunks=6, precision="fp32", horizon=2)
    assert rec.outcome.shape == (4, 4, 2) and (rec.outcome[1:, 0, 0] == rec.outcome[:-1, 0, 1]).all()
    for plan in ([0, 1, 2, 3], [3, 3, 0, 1]):
        for h in (1, 2):
            it = iter(plan + [0])  # one following chunk leaves one more decision than the cache's two
            on = run_online(lact(tok), tok, path, lambda o, al: torch.tensor([next(it)]), budget=12, chunk_size=48,
                            max_chunks=6, carry=False, guard=False, precision="fp32", horizon=h)
            cached, w = rec.outcome[np.arange(4), plan, :h], rec.tokens[:, :h]
            assert on.loss[:4] == [float(np.dot(c.astype(np.float64), x) / x.sum()) if h > 1 else float(c[0]) for c, x in zip(cached, w)]
            assert np.array_equal(np.array(on.static[:4], np.float32), rec.features)
    carried = run_online(lact(tok), tok, path, fixed_chooser("UPDATE_2"), budget=5, chunk_size=48, max_chunks=6,
                         precision="fp32")
    assert carried.loss[0] == rec.outcome[0, 2, 0] and not np.allclose(carried.loss[1:4], rec.outcome[1:, 2, 0])


def test_suffix_pass_scores_like_a_full_pass_with_lora(tok):
    "With peft LoRA on the last block only, the suffix pass from the kept prefix state gives the full pass's loss."
    from tttlab.lora import LoRAConfig, make_strategy
    model = tiny_llama(vocab_size=len(tok), hidden=64, layers=3, seed=2)
    s = make_strategy("lora", model, LearningConfig(strategy="lora", learning_rate=5e-2, precision="fp32"),
                      lora=LoRAConfig(r=4, layers=[2]))
    assert learning_start(s.model) == 2 and learning_start(tiny_llama(vocab_size=len(tok))) is None
    ids = torch.tensor([tok("import os\nfor name in os.listdir('.'):\n    print(name)\n" * 6)["input_ids"][:64]])
    loss0, _, state = read_with_prefix(s.model, ids, 2, features=False, precision="fp32")
    assert abs(suffix_loss(s.model, state, ids, "fp32") - loss0) < 1e-5
    for _ in range(3): s.learn_chunk(ids)
    after = suffix_loss(s.model, state, ids, "fp32")
    assert abs(after - read_chunk(s.model, ids, False, "fp32")[0]) < 1e-5 and abs(after - loss0) > 1e-4  # it learned


def test_cache_survives_restart_and_resumes(tok, split, tmp_path):
    small = split.head(2, 1, 1)
    settings = CacheSettings(model="tiny", strategy="lact", chunk_size=48, max_chunks=3, precision="fp32", split=small)
    build_cache(lact(tok), tok, OutcomeCache(tmp_path, settings.model_copy(update=dict(split=small.head(1, 1, 1)))),
                progress=False)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npz")}
    assert len(first) == 3
    cache = build_cache(lact(tok), tok, OutcomeCache(tmp_path, settings), progress=False)  # a larger split: resumes
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npz") if p.name in first} == first
    reopened = OutcomeCache(tmp_path)
    assert reopened.settings == settings
    a, b = reopened.get(small.train[1]), cache.get(small.train[1])
    assert np.array_equal(a.outcome, b.outcome) and np.array_equal(a.features, b.features)
    with pytest.raises(CacheMismatchError, match="chunk_size"):
        OutcomeCache(tmp_path, settings.model_copy(update=dict(chunk_size=64)))
    with pytest.raises(CacheMismatchError, match="build-cache"): OutcomeCache(tmp_path / "nothing")


def test_file_features_are_causal_and_measure_repetition(tok):
    "A chunk's file features depend on the file before it only; a repeated chunk is fully seen and similar."
    text = (stdlib_root() / "json" / "decoder.py").read_text()
    ids = tok(text, add_special_tokens=False)["input_ids"][:192]
    chunks = [ids[:64], ids[64:128], ids[128:192]]
    def run(cs):
        hist = FileHistory(len(cs))
        return [hist.observe(c, tok.decode(c), float(k)) for k, c in enumerate(cs)]
    a, b = run(chunks), run(chunks[:2] + [chunks[0]])
    assert a[:2] == b[:2] and a[2] != b[2]  # changing the last chunk changes nothing before it
    assert b[2]["ngram_seen"] == 1.0 and b[2]["seen_in_file"] == 1.0 and b[2]["compress_novelty"] < 0.5
    assert a[0]["prev_similarity"] == 0.0 and 0 <= a[1]["prev_similarity"] < 1 and a[0]["compress_novelty"] == 1.0
    assert a[2]["loss_vs_file"] == 2.0 - 0.5 and math.isclose(a[0]["chunks_left"], math.log(3)) and a[2]["chunks_left"] == 0.0


def test_refresh_features_upgrades_a_version_1_cache(tok, split, tmp_path):
    "A record with the first version's features is refused until `refresh_features` recomputes them; outcomes stay."
    settings = CacheSettings(model="tiny", strategy="lact", chunk_size=48, max_chunks=4, precision="fp32", split=split.head(1, 1, 1))
    cache = build_cache(lact(tok), tok, OutcomeCache(tmp_path, settings), progress=False)
    f = split.train[0]
    fresh = cache.get(f)
    now = static_names()  # version 1's layout: the model's features where they were, 7.0 in the six slots it used otherwise
    old = np.stack([fresh.features[:, now.index(n)] if n in MODEL_FEATURES else np.full(fresh.n, 7.0, np.float32)
                    for n in static_names(1)], 1)
    assert static_names(1) != now and not np.allclose(old, fresh.features)
    cache.put(type(fresh)(fresh.path, old, fresh.loss, fresh.outcome, fresh.tokens, fresh.seconds, version=1))
    with pytest.raises(CacheMismatchError, match="refresh_features"): cache.get(f)
    refresh_features(cache, tok, progress=False)
    again = cache.get(f)
    assert again.version == FEATURES_VERSION and np.array_equal(again.outcome, fresh.outcome)
    assert np.allclose(again.features, fresh.features, atol=1e-6)


def test_policy_starts_at_the_budget():
    for budget in (1.0, 1.5, 3.0, 12.0):
        p = PonderPolicy().start_at_budget(budget)
        probs = p(torch.zeros(3, 32))[0].softmax(-1)
        assert abs((probs * torch.tensor(COSTS)).sum(-1) - min(budget, float(np.mean(COSTS[1:])))).max() < 1e-2


def test_features_on_tiny_model_match_a_plain_forward(tok):
    model = tiny_llama(vocab_size=len(tok), hidden=64, layers=2, seed=1)
    ids = torch.tensor([tok("def f(x):\n    return x * 2\n" * 8)["input_ids"][:64]])
    loss, feats = read_chunk(model, ids, precision="fp32")
    assert len(feats) == 13 and all(math.isfinite(f) for f in feats)
    assert abs(loss - model(input_ids=ids, labels=ids).loss.item()) < 1e-4
    named = dict(zip(MODEL_FEATURES, feats))
    assert 0 < named["attn_entropy"] <= 1 + 1e-6  # attention entropy, normalised
    assert 0 < named["attn_peak"] <= 1 + 1e-6 and 0 <= named["last_sparsity"] <= 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(1.0, 12.0))
def test_oracle_is_optimal_and_within_budget(seed, budget):
    eps = synthetic_episodes(2, 3, seed=seed, hard_share=0.5)
    eps.outcome += 0.01 * torch.rand(eps.outcome.shape, generator=torch.Generator().manual_seed(seed))  # break ties
    orc = score(eps, oracle_actions(eps, budget), "oracle")
    g = eps.gain()[eps.mask].numpy()
    brute = max(sum(g[i, a] for i, a in enumerate(s)) for s in itertools.product(range(4), repeat=6)
                if sum(COSTS[a] for a in s) <= budget * 6 + 1e-9)
    assert orc.cost <= budget + 1e-9 and abs(orc.gain - brute / 6) < 1e-5  # score() reports the mean gain


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(1.0, 6.0))
def test_guard_never_overspends(seed, budget):
    eps = synthetic_episodes(8, 5, seed=seed)
    g = torch.Generator().manual_seed(seed)
    ro = rollout(eps, lambda o, al: torch.randint(0, 4, (len(o),), generator=g), budget, guard=True)
    per_file = ro.cost.sum(1) / eps.lengths
    assert (per_file <= budget + 1e-6).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(1.0, 6.0), carry=st.sampled_from([0.0, 5.0]))
def test_stream_guard_holds_a_running_budget(seed, budget, carry):
    eps = synthetic_episodes(8, 4, seed=seed)
    g = torch.Generator().manual_seed(seed)
    ro = rollout(eps, lambda o, al: torch.randint(0, 4, (len(o),), generator=g), budget, guard="stream", carry=carry)
    spent = ro.cost.T[eps.mask.T].cumsum(0)  # decision t of every file, then t + 1
    assert (spent <= budget * torch.arange(1, len(spent) + 1) + carry + 1e-5).all()


def test_random_baseline_spends_the_budget_in_expectation():
    eps = synthetic_episodes(200, 6, seed=0)
    assert abs(score(eps, random_actions(eps, 2.0), "random").cost - 2.0) < 0.1
    four = random_actions(eps, 2.0, action="UPDATE_4")
    assert set(four[eps.mask].tolist()) == {0, 3} and abs(score(eps, four, "random 4").cost - 2.0) < 0.2
    eps.outcome[..., 3] = eps.outcome[..., 0] - 1.0  # make UPDATE_4 the best use of the budget by far
    assert best_random_action(eps, 2.0) == 3


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(1.1, 4.0))
def test_fit_to_budget_meets_the_budget_on_its_files(seed, budget):
    "Fitted on some files, the regressor's price and a policy's threshold spend at most the budget there; the price nearly all of it."
    eps = synthetic_episodes(30, 5, seed=seed)
    reg = GainRegressor().fit(eps, budget)
    costs = [score(eps, rollout(eps, choose, budget).actions, "").cost
             for choose in (reg.choose, UpdateThreshold.fit(PonderPolicy(hidden=8).fit_normaliser(eps), eps, budget).choose)]
    assert max(costs) <= budget + 1e-6 and costs[0] >= budget - 0.1
    with pytest.raises(BudgetError): fit_to_budget(reg._rule, eps, 0.5, 0.0, 10.0)


def test_gain_regressor_recovers_a_linear_rule():
    "Gains that are linear in one feature are predicted exactly, and the priced rule then matches the oracle."
    eps = synthetic_episodes(40, 5, seed=3)
    x = eps.static[..., 1]
    eps.outcome = eps.outcome[..., :1] - 0.01 * (x - x.min())[..., None] * torch.tensor([0.0, 1.0, 2.0, 3.0])
    reg = GainRegressor().fit(eps, 2.0, ridge=1e-6)
    assert torch.allclose(reg(eps.static)[eps.mask], eps.gain()[eps.mask], atol=1e-5)
    orc = score(eps, oracle_actions(eps, 2.0), "oracle")
    got = score(eps, rollout(eps, reg.choose, 2.0).actions, "regressor", budget=2.0, oracle_gain=orc.gain)
    assert got.recovery > 0.97 and got.cost <= 2.0 + 1e-6
    cv = cross_validated_actions(eps, 2.0, folds=4)
    assert score(eps, cv, "cv", oracle_gain=orc.gain).recovery > 0.9
    with pytest.raises(PonderError, match="folds"): cross_validated_actions(eps, 2.0, folds=41)


def test_gain_ranker_recovers_a_linear_rule():
    "Gains linear in one feature: the listwise scores follow the gains, and the priced rule nearly matches the oracle."
    eps = synthetic_episodes(40, 5, seed=3)
    x = eps.static[..., 1]
    eps.outcome = eps.outcome[..., :1] - 0.01 * (x - x.min())[..., None] * torch.tensor([0.0, 1.0, 2.0, 3.0])
    rank = GainRanker().fit(eps, 2.0, top=0.2, decay=1e-4, steps=500)
    pred, true = rank(eps.static)[eps.mask][:, 3], eps.gain()[eps.mask][:, 3]
    assert np.corrcoef(pred.numpy(), true.numpy())[0, 1] > 0.9  # the target cares for the top share, not the order below it
    orc = score(eps, oracle_actions(eps, 2.0), "oracle")
    got = score(eps, rollout(eps, rank.choose, 2.0).actions, "ranker", budget=2.0, oracle_gain=orc.gain)
    assert got.recovery > 0.9 and got.cost <= 2.0 + 1e-6
    sc = cross_validated_scores(eps, 2.0, folds=4, make=lambda e: GainRanker().fit(e, 2.0, top=0.2, decay=1e-4))
    assert sc.shape == eps.mask.shape + (4,) and score(eps, sc.argmax(-1) * eps.mask, "cv", oracle_gain=orc.gain).recovery > 0.8
    assert torch.equal(cross_validated_actions(eps, 2.0, folds=4), cross_validated_scores(eps, 2.0, folds=4).argmax(-1) * eps.mask)
    with pytest.raises(PonderError, match="top share"): GainRanker().fit(eps, 2.0, top=1.5)


@pytest.mark.parametrize("prior", ["regressor", "ranker", "mlp"])
def test_policy_with_a_prior_starts_as_the_prior_and_saves_it(tmp_path, prior):
    "The untrained policy acts as its prior; PPO leaves the prior as fitted, and it comes back with the saved policy."
    train, val = synthetic_episodes(60, 6, seed=0), synthetic_episodes(30, 6, seed=1)
    model = GAIN_MODELS[prior]().fit(train, 1.5)
    start = PonderPolicy(hidden=8, prior=model, temperature=0.02).fit_normaliser(train)
    assert torch.equal(greedy_actions(start, val, 1.5, "off"), rollout(val, model.choose, 1.5).actions)
    with pytest.raises(PonderError, match="positive"): PonderPolicy(prior=model, temperature=-1.0)
    tp = train_policy(train, val, PPOConfig(budget=1.5, iterations=3, repeats=2, prior=prior, prior_temperature=0.02), progress=False)
    assert not any(n.startswith("prior") for n, _ in tp.policy.named_parameters())
    for k, v in model.state_dict().items(): assert torch.equal(tp.policy.prior.state_dict()[k], v), k  # PPO did not move it
    back = TrainedPolicy.load(tp.save(tmp_path / "p.pt"))
    assert back.config.prior == prior and torch.equal(greedy_actions(back.policy, val, 1.5), greedy_actions(tp.policy, val, 1.5))
    with pytest.raises(ValueError): PPOConfig(prior="forest")


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), signal=st.floats(0.01, 0.05), noise=st.floats(0.01, 0.08), h=st.sampled_from([2, 4, 8]))
def test_noise_ceiling_matches_a_simulation(seed, signal, noise, h):
    "Gains = a decision's true value + independent chunk noise: the estimated reliability and the ceiling match the simulation."
    rng = np.random.default_rng(seed)
    value = rng.normal(0.05, signal, 200_000)  # large enough that sampling noise in the reliability stays under the tolerance
    gains = value[:, None] + rng.normal(0, noise, (len(value), h))
    target, share = gains.mean(1), 0.05
    assert abs(target_reliability(gains) - signal**2 / (signal**2 + noise**2 / h)) < 0.03
    k = int(share * len(target))
    simulated = target[np.argsort(-value)[:k]].mean() / target[np.argsort(-target)[:k]].mean()
    assert abs(noise_ceiling(target, math.sqrt(target_reliability(gains)), share) - simulated) < 0.03
    assert noise_ceiling(target, 1.0, share) == pytest.approx(1.0)  # a signal that is the target gets all of it
    assert target_reliability(gains) >= target_reliability(gains[:, :2]) - 0.02  # more chunks, more of the target is true value


def test_noise_ceiling_errors():
    with pytest.raises(PonderError, match="H >= 2"): target_reliability(np.zeros((10, 1)))
    with pytest.raises(PonderError, match="strictly between"): noise_ceiling(np.ones(10), 0.5, 1.0)
    assert target_reliability(np.random.default_rng(0).normal(size=(5000, 4))) < 0.05  # pure noise: no true value


def test_ensemble_and_threshold_rules():
    train, val = synthetic_episodes(60, 6, seed=0), synthetic_episodes(30, 6, seed=1)
    pols = [train_policy(train, val, PPOConfig(budget=1.5, iterations=20, repeats=4, seed=s), progress=False).policy for s in (0, 1)]
    ens = PolicyEnsemble(pols)
    obs, allowed = torch.randn(7, 32), torch.tensor([[True, False, True, True]] * 7)
    probs = torch.stack([p(obs, allowed)[0].softmax(-1) for p in pols]).mean(0)
    logits, values = ens(obs, allowed)
    assert torch.allclose(logits.exp(), probs, atol=1e-6) and values.shape == (7, 2) and (logits[:, 1] == -math.inf).all()
    thr = UpdateThreshold(ens, threshold=math.inf)
    assert (thr.choose(obs, allowed) == 0).all()  # an infinite threshold never updates
    assert (UpdateThreshold(ens, -math.inf).choose(obs, allowed) > 0).all()  # and a -inf one always does, never UPDATE_1
    assert (UpdateThreshold(ens, -math.inf).choose(obs, allowed) != 1).all()
    rows = {r.method: r for r in compare_methods(train, val, 1.5, ens)}
    assert rows["policy (fitted threshold, guard)"].cost <= 1.5 + 1e-9 and rows["gain regressor (supervised, guard)"].cost <= 1.5 + 1e-9


def test_budget_pacer_follows_the_stream_and_knows_only_the_past():
    "The pacer's knob before a decision depends only on the decisions before it; a huge prior gives back the fixed knob."
    train, test = synthetic_episodes(60, 6, seed=0), synthetic_episodes(40, 6, seed=3)
    shifted = dataclasses.replace(test, static=test.static + 0.2 * torch.eye(28)[1])  # more chunks look worth an update
    reg = GainRegressor().fit(train, 1.5)
    obs, allowed = torch.randn(5, 32), torch.ones(5, 4, dtype=torch.bool)
    assert torch.equal(reg.choose(obs, allowed), reg.decide(reg.scores(obs, allowed), float(reg.price)))
    fixed = score(shifted, rollout(shifted, reg.choose, 1.5).actions, "").cost
    huge = BudgetPacer.around(reg, train, 1.5, prior_weight=1e9)
    assert score(shifted, rollout(shifted, huge.choose, 1.5).actions, "").cost == pytest.approx(fixed, abs=0.05)
    assert abs(huge.knobs[0] - float(reg.price)) < 1e-3  # the prior alone is the training files' price
    light = BudgetPacer.around(reg, train, 1.5, prior_weight=10)
    assert score(shifted, rollout(shifted, light.choose, 1.5).actions, "").cost < fixed - 0.2
    # causal: the knobs of a stream's first decisions do not change when its later decisions change
    half = shifted.n_decisions // 2
    a, b = BudgetPacer.around(reg, train, 1.5, 10), BudgetPacer.around(reg, train, 1.5, 10)
    flat = shifted.static[shifted.mask]
    other = torch.cat([flat[:half], flat[half:].flip(0) + 1.0])
    first = torch.zeros(len(flat), 32); first[:, :22], first[:, 26:] = flat[:, :22], flat[:, 22:]
    second = first.clone(); second[:, :22], second[:, 26:] = other[:, :22], other[:, 22:]
    ok = torch.ones(len(flat), 4, dtype=torch.bool)
    a.choose(first, ok); b.choose(second, ok)
    assert a.knobs[:half] == b.knobs[:half] and a.knobs[half:] != b.knobs[half:]
    guarded = BudgetPacer.around(UpdateThreshold(PonderPolicy().fit_normaliser(train).start_at_budget(1.5)), train, 1.5, 0)
    assert score(shifted, rollout(shifted, guarded.choose, 1.5, "stream").actions, "").cost <= 1.5 + 1e-9


def test_warm_start_imitates_the_regressor():
    train, val = synthetic_episodes(60, 6, seed=0), synthetic_episodes(30, 6, seed=1)
    reg = GainRegressor().fit(train, 1.5)
    tp = train_policy(train, val, PPOConfig(budget=1.5, iterations=1, repeats=2, warm_start=200), progress=False)
    teacher, student = (rollout(val, ch, 1.5).actions[val.mask] for ch in (reg.choose, tp.policy.greedy))
    assert (teacher == student).float().mean() > 0.9


def test_pid_lagrangian_rises_and_drains():
    pid = PIDLagrangian(kp=0.5, ki=0.2, kd=1.0)
    lams = [pid.update(4.0, 2.0) for _ in range(10)]
    assert lams[-1] > lams[0] > 0
    for _ in range(100): lam = pid.update(1.0, 2.0)
    assert lam == 0.0


def test_pid_derivative_answers_a_rising_cost_only():
    pid = PIDLagrangian(kp=0.0, ki=0.0, kd=1.0, delay=2, ema=0.0)  # the derivative alone, unsmoothed: cost now minus cost two updates back
    assert [pid.update(c, 10.0) for c in (1.0, 2.0, 3.0, 4.0)] == [0.0, 1.0, 2.0, 2.0]  # under the limit, but rising
    assert [pid.update(c, 10.0) for c in (3.0, 2.0, 1.0)] == [0.0, 0.0, 0.0]  # falling: no push


def test_impossible_rollout_and_fit_inputs_are_typed_errors():
    eps = synthetic_episodes(4, 3, seed=0)
    with pytest.raises(PonderError, match="carry"): rollout(eps, lambda o, al: torch.zeros(len(o), dtype=torch.long), 1.5, "stream", carry=-1.0)
    one = synthetic_episodes(1, 1, seed=0)
    for fit in (lambda: GainRegressor().fit(one, 1.5), lambda: PonderPolicy().fit_normaliser(one),
                lambda: train_policy(one, one, PPOConfig(iterations=1), progress=False)):
        with pytest.raises(EmptyCorpusError, match="at least 2"): fit()


def test_chunks_shorter_than_the_trailing_limit_are_kept(tok):
    text = (stdlib_root() / "json" / "decoder.py").read_text()
    small = file_chunks(text, tok, chunk_size=16)
    assert small and all(len(ids) == 16 for ids, _ in small[:-1]) and len(file_chunks(text, tok, chunk_size=64)) > 0


def test_policy_learns_the_rule_within_budget():
    train, val, test = (synthetic_episodes(n, 6, seed=s) for n, s in ((60, 0), (30, 1), (60, 2)))
    tp = train_policy(train, val, PPOConfig(budget=1.5, iterations=40, repeats=4), progress=False)
    rows = {r.method: r for r in compare_methods(train, test, 1.5, tp.policy)}
    free = rows["policy (no guard)"]
    assert free.cost <= 1.5 * 1.05, free
    assert free.recovery > 0.5 and free.gain > rows["random @ budget"].gain, free
    assert rows["policy (guard)"].cost <= 1.5 + 1e-9 and rows["policy (sampled, guard)"].cost <= 1.5 + 1e-9
    assert rows["policy (sampled)"].recovery > 0  # the stochastic policy PPO trained also finds the rule


def test_cli_end_to_end(tok, tmp_path):
    model = tiny_llama(vocab_size=len(tok), hidden=64, layers=4, seed=0)
    model.save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([*args, "--cache", str(tmp_path / "cache"), "--json"])
        return rc, out.getvalue().strip().splitlines(), err.getvalue()

    rc, out, _ = run("build-cache", "--model", str(tmp_path / "tiny"), "--files", "3", "1", "2", "--chunk-size", "48",
                     "--max-chunks", "4", "--horizon", "2", "--precision", "fp32", "--lr", "3e-2")
    built = json.loads(out[-1])
    assert rc == 0 and built["decisions"]["test"] > 0 and built["seconds_per_decision"] > 0
    rc, out, _ = run("train", "--budget", "2", "--iterations", "4", "--repeats", "2")
    assert rc == 0 and (tmp_path / "cache" / "policy-b2.pt").exists()
    rc, out, _ = run("eval", "--budget", "2")
    table = json.loads(out[-1])
    names = [m["method"] for m in table["methods"]]
    assert rc == 0 and names[0] == "No-TTT (SKIP)" and names[-1] == "oracle" and "policy (guard)" in names
    guarded = next(m for m in table["methods"] if m["method"] == "policy (guard)")
    assert guarded["over_budget"] <= 1e-6  # the stream guard without carry never overspends
    assert all({"cost", "loss", "recovery"} <= set(m) for m in table["methods"])
    primed = str(tmp_path / "primed.pt")  # a policy that starts from the gain regressor, trained and evaluated by the CLI
    rc, _, _ = run("train", "--budget", "2", "--iterations", "2", "--repeats", "2", "--prior", "regressor", "--out", primed)
    rc2, out, _ = run("eval", "--budget", "2", "--policy", primed)
    assert rc == rc2 == 0 and json.loads(out[-1])["policy"] == primed
    for args, msg in ((("train", "--budget", "0"), "positive"), (("eval", "--budget", "0.5"), "below the cost"),
                      (("build-cache", "--model", str(tmp_path / "no-model"), "--chunk-size", "0"), "impossible cache settings: chunk_size"),
                      (("eval", "--budget", "2", "--policy", str(tmp_path / "none.pt")), "no policy")):
        rc, _, err = run(*args)
        assert rc == 2 and msg in err, err


@pytest.mark.slow
def test_features_on_the_default_model():
    "The 13 model features on SmolLM2-135M, and their overhead over the plain reading pass."
    from tttlab.models import load_lm
    model, tok = load_lm()
    text = (stdlib_root() / "json" / "decoder.py").read_text()
    ids = tok(text)["input_ids"]
    chunks = [torch.tensor([ids[i:i + 128]]) for i in range(0, 384, 128)]
    loss, feats = read_chunk(model, chunks[0])
    assert 0 < loss < 6 and len(feats) == 13 and all(math.isfinite(f) for f in feats)
    ov = feature_overhead(model, chunks, repeats=1)
    assert ov["plain_s"] > 0 and ov["features_s"] > 0
    print(ov)
