"""Disentanglement metrics: the port check (true factors score ~1, mixtures score low) and determinism."""
import numpy as np
import pytest

from contrafeat.errors import UserError
from contrafeat.evaluation.disentanglement import (
    QUICK,
    dci,
    dci_from_importance,
    dci_from_samples,
    disentanglement_metrics,
    factorvae_score,
    mig,
    mig_from_samples,
    uniform_factors,
    vote_accuracy,
)

SIZES = [10, 8, 4]
SMALL = {"factorvae": {"num_train": 300, "num_eval": 200, "num_variance_estimate": 500}, "mig": {"num_train": 1500}}


class IdentityWorld:
    """Observations are the factor indices themselves, plus tiny noise."""

    def __init__(self, factor_sizes=SIZES, noise=1e-3, seed=123):
        self.factor_sizes = list(factor_sizes)
        self.noise = noise
        self.noise_state = np.random.RandomState(seed)

    def sample_factors(self, n, random_state):
        return uniform_factors(self.factor_sizes, n, random_state)

    def observations(self, factors):
        return factors + self.noise * self.noise_state.randn(*factors.shape)


def identity(observations):
    return observations


def mixing(seed=0):
    """A random rotation of the (standardised) factor axes: every code dim mixes every factor."""
    matrix, _ = np.linalg.qr(np.random.RandomState(seed).randn(len(SIZES), len(SIZES)))
    scale = 1.0 / np.array(SIZES, dtype=float)
    return lambda observations: (observations * scale) @ matrix


def duplicated(observations):
    """Codes [f0, f0, f1, f2]: factor 0 is copied into two code dims."""
    return np.concatenate([observations[:, :1], observations], axis=1)


def samples(represent, n, seed):
    world, state = IdentityWorld(), np.random.RandomState(seed)
    factors = world.sample_factors(n, state)
    return represent(world.observations(factors)), factors


def test_uniform_factors_cover_each_range():
    factors = uniform_factors(SIZES, 4000, np.random.RandomState(0))
    assert factors.shape == (4000, 3)
    for column, size in zip(factors.T, SIZES):
        assert set(np.unique(column)) == set(range(size))


def test_factorvae_score_is_one_for_true_factors_and_lower_for_mixtures():
    true = factorvae_score(IdentityWorld(), identity, np.random.RandomState(0), **SMALL["factorvae"])
    mixed = factorvae_score(IdentityWorld(), mixing(), np.random.RandomState(0), **SMALL["factorvae"])
    assert true["eval_accuracy"] == 1.0 and true["train_accuracy"] == 1.0
    assert true["num_active_dims"] == 3
    assert mixed["eval_accuracy"] < 0.9


def test_factorvae_score_prunes_dims_by_their_std():
    def with_constant_dims(observations):
        return np.concatenate([observations, 0.01 * observations[:, :1], np.zeros((len(observations), 1))], axis=1)

    result = factorvae_score(IdentityWorld(), with_constant_dims, np.random.RandomState(0), **SMALL["factorvae"])
    assert result["num_active_dims"] == 3
    assert result["eval_accuracy"] == 1.0
    silent = factorvae_score(IdentityWorld(), lambda o: 0.001 * o, np.random.RandomState(0), **SMALL["factorvae"])
    assert silent == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_vote_accuracy_uses_the_train_majority_on_eval_votes():
    train = np.array([[5, 0], [1, 4]])
    evaluation = np.array([[1, 3], [2, 2]])
    train_accuracy, eval_accuracy = vote_accuracy(train, evaluation)
    assert train_accuracy == pytest.approx(9 / 10)
    assert eval_accuracy == pytest.approx(3 / 8)


def test_mig_is_near_one_for_true_factors_and_low_for_mixtures():
    true = mig(IdentityWorld(), identity, np.random.RandomState(0), **SMALL["mig"])
    mixed = mig(IdentityWorld(), mixing(), np.random.RandomState(0), **SMALL["mig"])
    assert true["mig"] > 0.9
    assert len(true["mig_per_factor"]) == 3
    assert mixed["mig"] < 0.35


def test_mig_of_a_duplicated_factor_is_zero():
    result = mig_from_samples(*samples(duplicated, 1500, seed=1))
    per_factor = result["mig_per_factor"]
    assert per_factor[0] == pytest.approx(0.0, abs=1e-9)
    assert min(per_factor[1:]) > 0.9
    assert result["mig"] == pytest.approx(np.mean(per_factor))


def test_mig_information_is_in_nats_of_the_factor_entropy():
    factors = np.repeat(np.arange(4), 250)[:, None]
    codes = np.stack([factors[:, 0] * 1.0, np.zeros(1000)], axis=1)
    assert mig_from_samples(codes, factors)["mig"] == pytest.approx(1.0)
    assert mig_from_samples(np.stack([factors[:, 0] * 1.0, factors[:, 0] * 2.0], axis=1), factors)["mig"] == pytest.approx(0.0)


def test_dci_is_near_one_for_true_factors_and_lower_for_mixtures():
    state = np.random.RandomState(0)
    true = dci_from_samples(*samples(identity, 800, 1), *samples(identity, 400, 2), state, n_jobs=1)
    state = np.random.RandomState(0)
    mixed = dci_from_samples(*samples(mixing(), 800, 1), *samples(mixing(), 400, 2), state, n_jobs=1)
    assert true["disentanglement"] > 0.9 and true["completeness"] > 0.9
    assert true["informativeness"] > 0.95
    assert np.array(true["importance"]).shape == (3, 3)
    assert mixed["disentanglement"] < 0.3 and mixed["completeness"] < 0.3


def test_dci_from_importance_matches_the_definition():
    perfect = dci_from_importance(np.eye(3))
    assert perfect["disentanglement"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["completeness"] == pytest.approx(1.0, abs=1e-6)
    uniform = dci_from_importance(np.ones((4, 2)))
    assert uniform["disentanglement"] == pytest.approx(0.0, abs=1e-9)
    assert uniform["completeness"] == pytest.approx(0.0, abs=1e-9)
    # Code 0 serves both factors equally (D_0 = 0), code 1 only factor 0 (D_1 = 1); masses 2/3 and 1/3.
    mixed = dci_from_importance(np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert mixed["disentanglement_per_code"] == pytest.approx([0.0, 1.0], abs=1e-6)
    assert mixed["disentanglement"] == pytest.approx(1 / 3, abs=1e-6)
    # Factor 0 spread over both codes (C_0 = 0), factor 1 on code 0 only (C_1 = 1); masses 2/3 and 1/3.
    assert mixed["completeness"] == pytest.approx(1 / 3, abs=1e-6)
    empty = dci_from_importance(np.zeros((2, 2)))
    assert empty["disentanglement"] == pytest.approx(0.0, abs=1e-9)


def test_metrics_are_deterministic_for_a_seed():
    counts = {"num_train": 300, "num_test": 200}
    parallel = dci(IdentityWorld(), mixing(), np.random.RandomState(5), n_jobs=2, **counts)
    sequential = dci(IdentityWorld(), mixing(), np.random.RandomState(5), n_jobs=1, **counts)
    assert parallel == sequential
    assert factorvae_score(IdentityWorld(), mixing(), np.random.RandomState(5), **SMALL["factorvae"]) == factorvae_score(
        IdentityWorld(), mixing(), np.random.RandomState(5), **SMALL["factorvae"]
    )
    assert mig(IdentityWorld(), mixing(), np.random.RandomState(5), **SMALL["mig"]) == mig(
        IdentityWorld(), mixing(), np.random.RandomState(5), **SMALL["mig"]
    )


def test_bad_inputs_raise_user_errors():
    with pytest.raises(UserError, match="represent"):
        mig(IdentityWorld(), lambda o: o[:-1], np.random.RandomState(0), num_train=100)
    with pytest.raises(UserError, match="batch_size"):
        factorvae_score(IdentityWorld(), identity, np.random.RandomState(0), batch_size=1)
    with pytest.raises(UserError, match="code dims"):
        mig_from_samples(np.zeros((10, 1)), np.zeros((10, 1), dtype=int))
    with pytest.raises(UserError, match="never change"):
        mig_from_samples(np.random.RandomState(0).randn(10, 2), np.zeros((10, 1), dtype=int))


@pytest.mark.slow
def test_quick_counts_reproduce_the_port_check():
    result = disentanglement_metrics(IdentityWorld(), identity, seed=0, counts=QUICK)
    assert set(QUICK) == set(result)
    assert result["factorvae"]["eval_accuracy"] == 1.0
    assert result["mig"]["mig"] > 0.9
    assert result["dci"]["disentanglement"] > 0.9


def test_metric_counts_scale_the_quick_full_or_authors_protocol():
    from contrafeat.evaluation.disentanglement import AUTHORS, FULL, metric_counts

    assert metric_counts("quick") == QUICK
    assert metric_counts() == FULL
    assert metric_counts("authors") == AUTHORS and AUTHORS["mig"] == {"num_train": 1000} and AUTHORS["factorvae"] == FULL["factorvae"]
    assert metric_counts("full", fraction=0.1)["dci"] == {"num_train": 1000, "num_test": 500}
    assert metric_counts("quick", fraction=1e-6)["mig"] == {"num_train": 2}
    with pytest.raises(UserError, match="metric-fraction"):
        metric_counts("quick", fraction=0.0)
    with pytest.raises(UserError, match="metric-counts"):
        metric_counts("fast")


def test_a_duplicated_factor_costs_mig_one_factor_share():
    true = mig_from_samples(*samples(identity, 1500, seed=1))["mig"]
    copied = mig_from_samples(*samples(duplicated, 1500, seed=1))["mig"]
    assert copied == pytest.approx(true * 2 / 3, abs=0.03)
