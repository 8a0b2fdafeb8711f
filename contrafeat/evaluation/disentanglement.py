"""Ground-truth disentanglement metrics (FactorVAE score, MIG, DCI) with the disentanglement_lib protocol."""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import mutual_info_score

from contrafeat.errors import UserError

ROWS_PER_CALL = 1024
"""Observations handed to the representation in one call."""

QUICK: dict[str, dict[str, int]] = {
    "factorvae": {"num_train": 1000, "num_eval": 500, "num_variance_estimate": 1000},
    "mig": {"num_train": 2000},
    "dci": {"num_train": 2000, "num_test": 1000},
}
"""Reduced sample counts per metric, for quick looks only: they lower MIG and DCI and widen the FVM spread."""
FULL: dict[str, dict[str, int]] = {
    "factorvae": {"num_train": 10000, "num_eval": 5000, "num_variance_estimate": 10000},
    "mig": {"num_train": 10000},
    "dci": {"num_train": 10000, "num_test": 5000},
}
"""The disentanglement_lib sample counts (the functions' defaults): the published tables' protocol."""
AUTHORS: dict[str, dict[str, int]] = {
    "factorvae": FULL["factorvae"],
    "mig": {"num_train": 1000},
    "dci": {"num_train": 1000, "num_test": 1000},
}
"""The ContraFeat authors' evaluation code: FVM as disentanglement_lib, MIG and DCI on 1,000 points."""
COUNTS = {"full": FULL, "authors": AUTHORS, "quick": QUICK}
"""The `--metric-counts` choices."""


def metric_counts(protocol: str = "full", fraction: float = 1.0) -> dict[str, dict[str, int]]:
    """The counts of a protocol (see COUNTS), each scaled by `fraction` (at least 2, the smallest count any metric accepts)."""
    if protocol not in COUNTS:
        raise UserError(f"--metric-counts {protocol!r}: expected one of {', '.join(COUNTS)}")
    if not 0 < fraction <= 1:
        raise UserError(f"--metric-fraction {fraction}: expected a value in (0, 1]")
    return {metric: {name: max(2, int(round(value * fraction))) for name, value in counts.items()} for metric, counts in COUNTS[protocol].items()}

Representation = Callable[[Any], np.ndarray]
"""Maps a batch of observations to codes [n, D] (the encoder means)."""


class FactorSampler(Protocol):
    """A ground-truth world: independent uniform integer factors and their observations."""

    factor_sizes: list[int]

    def sample_factors(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        """Integer factors [n, F], each column uniform over 0..factor_sizes[k]-1."""
        ...

    def observations(self, factors: np.ndarray) -> Any:
        """The observations (images) of the given factor rows."""
        ...


def uniform_factors(factor_sizes: list[int], n: int, random_state: np.random.RandomState) -> np.ndarray:
    """Independent uniform factor indices [n, F]: the sampling every metric here assumes."""
    return np.stack([random_state.randint(size, size=n) for size in factor_sizes], axis=1)


def require_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UserError(f"{name}: expected an integer >= {minimum}, got {value}")


def encode_factors(sampler: FactorSampler, represent: Representation, factors: np.ndarray, rows_per_call: int = ROWS_PER_CALL) -> np.ndarray:
    """Codes [n, D] of the observations of `factors`, encoded `rows_per_call` rows at a time."""
    parts = []
    for start in range(0, len(factors), rows_per_call):
        chunk = factors[start : start + rows_per_call]
        codes = np.asarray(represent(sampler.observations(chunk)), dtype=np.float64)
        if codes.ndim != 2 or len(codes) != len(chunk):
            raise UserError(f"represent: expected codes of shape [{len(chunk)}, D] for {len(chunk)} observations, got {codes.shape}")
        parts.append(codes)
    return np.concatenate(parts)


def sample_codes(
    sampler: FactorSampler, represent: Representation, n: int, random_state: np.random.RandomState, rows_per_call: int = ROWS_PER_CALL
) -> tuple[np.ndarray, np.ndarray]:
    """n random factor rows and their codes: (codes [n, D], factors [n, F])."""
    factors = sampler.sample_factors(n, random_state)
    return encode_factors(sampler, represent, factors, rows_per_call), factors


# FactorVAE score (Kim & Mnih 2018)


def factorvae_votes(
    sampler: FactorSampler,
    represent: Representation,
    random_state: np.random.RandomState,
    num_votes: int,
    batch_size: int,
    global_var: np.ndarray,
    active: np.ndarray,
    rows_per_call: int = ROWS_PER_CALL,
) -> np.ndarray:
    """Vote counts [F, active dims]: per vote a fixed factor k and the active dim of least relative variance."""
    num_factors = len(sampler.factor_sizes)
    votes = np.zeros((num_factors, int(active.sum())), dtype=np.int64)
    votes_per_call = max(1, rows_per_call // batch_size)
    for start in range(0, num_votes, votes_per_call):
        count = min(votes_per_call, num_votes - start)
        fixed = random_state.randint(num_factors, size=count)
        factors = sampler.sample_factors(count * batch_size, random_state).reshape(count, batch_size, num_factors)
        for vote, factor in enumerate(fixed):
            factors[vote, :, factor] = factors[vote, 0, factor]
        codes = encode_factors(sampler, represent, factors.reshape(count * batch_size, num_factors), rows_per_call)
        local_var = codes.reshape(count, batch_size, -1)[:, :, active].var(axis=1, ddof=1)
        np.add.at(votes, (fixed, np.argmin(local_var / global_var[active], axis=1)), 1)
    return votes


def vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[float, float]:
    """Majority-vote classifier (dim -> factor) from the train votes; its accuracy on train and eval votes."""
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return (
        float(train_votes[classifier, columns].sum() / train_votes.sum()),
        float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
    )


def factorvae_score(
    sampler: FactorSampler,
    represent: Representation,
    random_state: np.random.RandomState,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_std: float = 0.05,
    rows_per_call: int = ROWS_PER_CALL,
) -> dict[str, float]:
    """FactorVAE score: eval accuracy of the majority-vote classifier; 0 when no code dim is active."""
    require_at_least("batch_size", batch_size, 2)
    require_at_least("num_variance_estimate", num_variance_estimate, 2)
    require_at_least("num_train", num_train, 1)
    require_at_least("num_eval", num_eval, 1)
    codes, _ = sample_codes(sampler, represent, num_variance_estimate, random_state, rows_per_call)
    global_var = codes.var(axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_std
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = factorvae_votes(sampler, represent, random_state, num_train, batch_size, global_var, active, rows_per_call)
    eval_votes = factorvae_votes(sampler, represent, random_state, num_eval, batch_size, global_var, active, rows_per_call)
    train_accuracy, eval_accuracy = vote_accuracy(train_votes, eval_votes)
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy, "num_active_dims": int(active.sum())}


# MIG (Chen et al. 2018)


def check_samples(codes: np.ndarray, factors: np.ndarray, min_dims: int, min_factors: int) -> None:
    """Codes [n, D] and integer factors [n, F] with the same n and enough columns."""
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise UserError(f"codes and factors: expected arrays [n, D] and [n, F] with the same n, got {codes.shape} and {factors.shape}")
    if codes.shape[1] < min_dims or factors.shape[1] < min_factors:
        raise UserError(
            f"codes and factors: expected >= {min_dims} code dims and >= {min_factors} factors, got {codes.shape[1]} and {factors.shape[1]}"
        )


def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Per code dim, bin numbers 1..num_bins of equal-width bins over that dim's own min..max."""
    return np.stack(
        [np.digitize(column, np.histogram(column, num_bins)[1][:-1]) for column in codes.T], axis=1
    )


def mig_from_samples(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, Any]:
    """MIG of codes [n, D] against integer factors [n, F]: mean over factors of the entropy-normalised MI gap."""
    check_samples(codes, factors, min_dims=2, min_factors=1)
    binned = discretize(codes, num_bins)
    information = np.array([[mutual_info_score(factor, code) for factor in factors.T] for code in binned.T])
    entropy = np.array([mutual_info_score(factor, factor) for factor in factors.T])
    if np.any(entropy == 0):
        raise UserError(f"factors: columns {np.flatnonzero(entropy == 0).tolist()} never change; MIG needs every factor to vary")
    top = np.sort(information, axis=0)[::-1]
    gaps = (top[0] - top[1]) / entropy
    return {"mig": float(gaps.mean()), "mig_per_factor": gaps.tolist()}


def mig(
    sampler: FactorSampler,
    represent: Representation,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    num_bins: int = 20,
    rows_per_call: int = ROWS_PER_CALL,
) -> dict[str, Any]:
    """MIG on num_train random samples of the world."""
    require_at_least("num_train", num_train, 2)
    require_at_least("num_bins", num_bins, 2)
    codes, factors = sample_codes(sampler, represent, num_train, random_state, rows_per_call)
    return mig_from_samples(codes, factors, num_bins)


# DCI (Eastwood & Williams 2018)


def fit_factor(
    train_codes: np.ndarray, train_y: np.ndarray, test_codes: np.ndarray, test_y: np.ndarray, seed: int
) -> tuple[np.ndarray, float, float]:
    """Default gradient-boosted trees predicting one factor: (|importances| [D], train accuracy, test accuracy)."""
    model = GradientBoostingClassifier(random_state=seed).fit(train_codes, train_y)
    return (
        np.abs(model.feature_importances_),
        float(np.mean(model.predict(train_codes) == train_y)),
        float(np.mean(model.predict(test_codes) == test_y)),
    )


def weighted_one_minus_entropy(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """Per row: 1 - entropy of the row normalised, in log base = row length; and their mass-weighted sum."""
    probabilities = importance + 1e-11
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    per_row = 1.0 + (probabilities * np.log(probabilities)).sum(axis=1) / np.log(importance.shape[1])
    mass = importance if importance.sum() > 0 else np.ones_like(importance)
    weights = mass.sum(axis=1) / mass.sum()
    return float(np.sum(per_row * weights)), per_row


def dci_from_importance(importance: np.ndarray) -> dict[str, Any]:
    """DCI disentanglement (per code dim, base #factors) and completeness (per factor, base #dims) of R [D, F]."""
    disentanglement, per_code = weighted_one_minus_entropy(importance)
    completeness, per_factor = weighted_one_minus_entropy(importance.T)
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "disentanglement_per_code": per_code.tolist(),
        "completeness_per_factor": per_factor.tolist(),
    }


def dci_from_samples(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    random_state: np.random.RandomState,
    n_jobs: int = 2,
) -> dict[str, Any]:
    """DCI from train and test samples; informativeness is the mean test accuracy over factors."""
    check_samples(train_codes, train_factors, min_dims=2, min_factors=2)
    check_samples(test_codes, test_factors, min_dims=train_codes.shape[1], min_factors=train_factors.shape[1])
    seeds = random_state.randint(2**31 - 1, size=int(train_factors.shape[1]))  # [F]
    fits = Parallel(n_jobs=n_jobs)(
        delayed(fit_factor)(train_codes, train_factors[:, k], test_codes, test_factors[:, k], int(seeds[k]))
        for k in range(train_factors.shape[1])
    )
    importance = np.stack([fit[0] for fit in fits], axis=1)
    return {
        **dci_from_importance(importance),
        "informativeness": float(np.mean([fit[2] for fit in fits])),
        "informativeness_train": float(np.mean([fit[1] for fit in fits])),
        "importance": importance.tolist(),
    }


def dci(
    sampler: FactorSampler,
    represent: Representation,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    num_test: int = 5000,
    n_jobs: int = 2,
    rows_per_call: int = ROWS_PER_CALL,
) -> dict[str, Any]:
    """DCI on independent train and test samples of the world; factors fitted in parallel (n_jobs)."""
    require_at_least("num_train", num_train, 2)
    require_at_least("num_test", num_test, 1)
    train_codes, train_factors = sample_codes(sampler, represent, num_train, random_state, rows_per_call)
    test_codes, test_factors = sample_codes(sampler, represent, num_test, random_state, rows_per_call)
    return dci_from_samples(train_codes, train_factors, test_codes, test_factors, random_state, n_jobs)


def disentanglement_metrics(
    sampler: FactorSampler, represent: Representation, seed: int = 0, counts: dict[str, dict[str, int]] = FULL
) -> dict[str, dict[str, Any]]:
    """All three metrics, each with its own RandomState(seed), sized by `counts` (see COUNTS)."""
    return {
        "factorvae": factorvae_score(sampler, represent, np.random.RandomState(seed), **counts["factorvae"]),
        "mig": mig(sampler, represent, np.random.RandomState(seed), **counts["mig"]),
        "dci": dci(sampler, represent, np.random.RandomState(seed), **counts["dci"]),
    }
