"""The fair-comparison protocol every "improves on CE" claim in the book goes through: pooled trials with
common random numbers, the choice of settings inside the resampling.

Anchors: Dodge et al. 2019 (expected validation performance of a T-trial search), Bouthillier et al. 2021
(the choice of hyperparameters varies as much as the seed: randomise it inside the comparison; P(A > B)),
Musgrave et al. 2020 and Kornblith et al. 2021 (equal budgets, validation split from train), Guo et al. 2017
(temperature scaling), Agarwal et al. 2021 (stratified bootstrap), Choi et al. 2019 ("On Empirical
Comparisons of Optimizers for Deep Learning", arXiv 1910.05446) and Sivaprasad et al. 2020 ("Optimizer
Benchmarking Needs to Account for Hyperparameter Tuning", ICML): rankings flip with the search spaces and the
tuning budget, so each method's search space is declared, in its own coordinates, and checked. It replaced "tune on one seed, then
retrain the winner", whose intervals held seed noise around one tuning outcome while the outcome itself
moved with rounding. Per task:

1. **One design of N trial indices** (``trials``). Index i fixes, for every method (CE included), the seed
   (initialisation, data order, label noise and a fresh stratified train/validation re-split: the run seed
   drives all four) and the learning-rate stratum: one Latin-hypercube column u_lr shared by every method
   (common random numbers), mapped into each method's declared range of its effective step η_eff
   (:func:`design`; log: η_eff = lo·(hi/lo)^u_lr). Each method draws its own knobs from its own
   Latin-hypercube columns, each in its declared range. With ``lr_coupling: {knob: k, power: p}`` the run
   trains with η = η_eff·k^p on SGD (temperature: η_eff = ηβ², p = −2; SGT: η_eff = ηα, p = −1) and with
   η = η_eff on AdamW, which divides out the gradient's scale. Every trial's setting keeps ``lr`` (trained)
   and ``lr_eff``.
2. **Every (method, i) is trained once**, recording validation and test metrics (accuracy, NLL, ECE, and
   NLL/ECE after temperature scaling).
3. **The estimand** — "the test metric you get when you run a T-trial random search with this loss and keep
   the model it picks on validation" — is E_T, computed in closed form over the pool
   (:func:`softgrad.stats.expected_selected`: without-replacement order-statistic weights, ties averaged);
   Δ = E_T(method) − E_T(CE) per task and metric.
4. **Intervals with the selection inside**: an outer bootstrap over trial indices, the same resampled indices
   for every method (paired); percentile intervals reported at each comparison's Holm level per metric
   family (:func:`softgrad.stats.holm_intervals`, so a verdict never contradicts its interval); a stratified
   across-task mean (indices resampled within each task), Bonferroni over the methods.
   P(method beats CE) over shared random T-subsets (:func:`softgrad.stats.p_beats`) with its bootstrap
   interval; budget curves E_T for T = 1…N/4 from the same pool.
5. **Convergence, on the estimand** (:func:`longer_trials`, :func:`convergence_verdict`): CE trained
   ``longer`` × the epochs (same settings and seeds) on its top validation ranks that carry ``longer_weight`` of
   E_T's selection weight — the models a search keeps — and E_T(longer) − E_T(budget) under the comparisons'
   own index resamples. A claim that a method beats CE counts only where CE has not been shown to gain from
   training longer: on a task where it has, a *reproduced* verdict is reported as *inconclusive at this
   budget* (``ce_not_converged`` says so beside it). Where longer training hurts, the budget is an
   early-stopping choice, the same for every method.
6. **The winner's curse**: E_T reports the selected trials' own test scores, which favours settings whose
   result varies with the seed. Each method's most frequent winner (the trial of highest validation accuracy:
   the one a T-subset keeps most often) is retrained with ``retrain_seeds`` fresh seeds (seed, data order,
   label noise and split all new); :attr:`ProtocolResult.retrain` sets its own test score beside theirs.
7. **Margins, bounds and stability**: each metric's equivalence margin is declared per task (``margins``, with
   ``margin_reasons``); every interval is reported with the bound it excludes (:func:`bound_text`) and the
   share of bootstrap replicates (each a plausible rerun) whose shifted interval gives the same verdict —
   its predicted stability (``predicted_agreement``; below 80%: ``fragile``). :func:`split_half` analyses the
   pool's two halves as two independent pools and sets their agreement beside the bootstrap's prediction.
8. **Power** (:func:`power`): the same analysis with each replicate's deviation scaled by √(N/N′) — what the
   verdicts and their predicted agreement would be with N′ trial indices, the estimates taken as the truth;
   :func:`spread_ratio` checks the 1/√N′ scaling on sub-pools. It plans a design and decides no verdict.
9. **Does the search hold every optimum?** (:func:`edge_shares`): per task, method, searched dimension
   (η_eff and each knob) and side, the share Σ w_i of E_T's selection weights w_i
   (:func:`softgrad.stats.selection_weights`) over the trials whose position u_i in the range (its own scale)
   lies in the outer tenth (u < 0.1 or u > 0.9); a flat response puts 10% there. Above 15% at an edge that is
   not a definitional limit (:meth:`softgrad.losses.core.Method.limits`: the knob reaches CE, or its domain
   ends) it is flagged: widen that range, and say so. :func:`softgrad.plots.edge_figure` draws it.

The specification is a parameter file's ``extra.protocol`` (:data:`DEFAULTS`); :func:`check_spec` validates it
before any training. The compared methods and their run settings come from the registry
(:data:`softgrad.losses.COMPARED`); a method listed with no mapping (``temperature:`` alone, i.e. null) searches
its registry entry's default knob range. The search-space keys (:func:`check_spec`): ``lr`` as
``[lo, hi(, scale)]`` or ``{task: [lo, hi(, scale)]}``; per method ``<knob>: [lo, hi(, scale)]`` (inside the
knob's declared domain, limits allowed: SGT α ≤ 1, AS-Softmax δ ∈ [0, 1]), optional ``lr`` (the method's own
η_eff range, the same forms) and ``lr_coupling: {knob, power}``; ``search_reasons`` (method or ``lr`` ->
sentence, printed beside the ranges by :func:`search_table`).

The package's files are the protocol's steps, and data flows one way (no cycles):
``spec`` (the specification, its checks, margins, task configs) ← ``design`` (the trial indices' settings and
the configs of every run: pool, convergence gate, winners' retrains; :func:`plan`, :func:`count`,
:func:`search_table`) ← ``analysis`` (steps 3–9 on a pool: :func:`analyse`, the gate's verdict, stability,
:func:`power`, :func:`split_half`, :func:`agreement`, :func:`edge_shares`; every resampled statistic reads its
replicates through :func:`replicate_values`) ← ``run`` (training: :func:`run` trains the pool and the runs that
depend on it, then analyses it) and ``text`` (the findings in words: :func:`bound_text`, :func:`ci_text`,
:func:`bottom_line`; the display names a reader sees instead of the keys: :func:`task_labels`,
:data:`PARAM_LABELS`, :data:`SHORT`). Everything is re-exported here: ``from softgrad import protocol;
protocol.analyse``.
"""

from __future__ import annotations

from ..common import POINTS
from .analysis import (CONVERGED, NOT_CONVERGED, OVERFITS, UNDETERMINED, ProtocolResult, _aggregate, _budget,
                       _codes, _convergence, _pool_arrays, _rows, _stability, analyse, convergence_verdict)
from .checks import (EDGE_FLAG, EDGE_TENTH, _position, _subpool, agreement, edge_shares, power, split_half,
                     spread_ratio, widening)
from .resample import example_resamples, failed, index_resamples, replicate_values, worst_finite
from .design import (_column, _configs, _knob_values, _longer_configs, _retrain_configs, _round, _stream,
                     _top_share, _with, count, design, longer_trials, plan, search_table, unit_design, winners)
from .run import _train, retrain_table, run
from .spec import (DEFAULTS, LR_KEYS, METHODS, METRICS, SCALES, _fail, _int, _range, check_spec, dimensions, knobs,
                   knobs_of, limit, lr_coupling, lr_range, margin, tasks)
from .text import (DATASET_LABELS, MODEL_LABELS, PARAM_LABELS, SHORT, _names, bottom_line, bound_text, ci_text,
                   decisiveness, differences, practice_table, practice_text, param_text, setting_text,
                   task_labels, search_text, optimiser_text, time_ratios)

__all__ = ["DEFAULTS", "METHODS", "METRICS", "check_spec", "margin", "tasks", "design", "plan", "count", "run",
           "analyse", "agreement", "split_half", "bound_text", "ProtocolResult", "winners", "retrain_table",
           "longer_trials", "convergence_verdict", "power", "spread_ratio",
           # declared search spaces and the edge-share diagnostic
           "knobs", "lr_range", "lr_coupling", "dimensions", "limit", "unit_design", "search_table", "edge_shares",
           # the bootstrap's seam (index resamples; each replicate's values per trial)
           "index_resamples", "example_resamples", "replicate_values", "failed", "worst_finite", "widening",
           # the findings in words
           "differences", "decisiveness", "practice_table", "practice_text",
           # what a reader sees instead of the internal keys
           "SHORT", "PARAM_LABELS", "DATASET_LABELS", "MODEL_LABELS", "task_labels", "setting_text", "param_text",
           "search_text", "optimiser_text", "time_ratios"]
