"""The title's subset is the number of samples the study trained from: never more than the dataset held."""

from helpers import record

from bench.explain.goal import Goal
from bench.render.summary import summarize


def _records(asked: int, held: int) -> list[dict]:
    recs = [record("single", 1, [1.0], train_samples=asked), record("ddp", 2, [0.6], train_samples=asked)]
    for r in recs:
        r["dataset"] = {"name": "cifar10", "train_samples": held, "test_samples": 100}
    return recs


def test_a_subset_larger_than_the_dataset_is_titled_with_what_the_dataset_held():
    # --train-samples 10000 (the quick CPU default) on a 300-image tree trains on 300 samples, not a 10,000 subset
    title = summarize(_records(10_000, 300), Goal()).title
    assert "(300-sample subset)" in title and "10,000" not in title


def test_a_subset_smaller_than_the_dataset_keeps_its_size():
    assert "(2,000-sample subset)" in summarize(_records(2_000, 2_000), Goal()).title
