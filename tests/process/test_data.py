
import pickle
import re
import shutil
import tarfile

import numpy as np
import pytest
from helpers import CLASSES, write_official, write_tree
from PIL import Image

from mgpu_core.cifar_files import find_cifar10, read_official
from mgpu_core.config import TrainConfig
from mgpu_core.datasets import load_dataset
from mgpu_core.image_arrays import DataError
from mgpu_core.synthetic import synthetic_cifar


def test_official_format_reads_back_pixels_and_labels(tmp_path):
    written = write_official(tmp_path)
    data = find_cifar10(tmp_path, tmp_path / "cache")
    train_x = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert data.train_x.shape == (30, 32, 32, 3) and data.train_x.dtype == np.uint8
    np.testing.assert_array_equal(data.train_x, train_x)
    np.testing.assert_array_equal(data.train_y, train_y)
    np.testing.assert_array_equal(data.test_x, written["test_batch"][0])
    assert data.classes == tuple(CLASSES) and data.name == "cifar10"


def test_truncated_official_batch_is_a_one_line_error_naming_the_file(tmp_path):
    write_official(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3: unreadable"):
        read_official(tmp_path / "cifar-10-batches-py")


def test_image_tree_reads_back_labels_in_class_order_and_caches(tmp_path):
    expected = write_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    data = find_cifar10(tmp_path / "tree", cache)
    assert data.classes == tuple(CLASSES)
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        np.testing.assert_array_equal(x, np.stack([p for p, _ in expected[split]]))  # PNG is lossless
        np.testing.assert_array_equal(y, [label for _, label in expected[split]])
    assert len(list(cache.glob("cifar10-*.npz"))) == 1
    again = find_cifar10(tmp_path / "tree", cache)
    np.testing.assert_array_equal(again.train_x, data.train_x)
    np.testing.assert_array_equal(again.test_y, data.test_y)


def test_cache_follows_changes_to_the_tree(tmp_path):
    write_tree(tmp_path / "tree", per_class=2)
    first = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "tree" / "train" / "cat" / "9999.png")
    second = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    assert len(second.train_y) == len(first.train_y) + 1


def test_jpeg_tree_and_its_tar_archive_agree(tmp_path):
    write_tree(tmp_path / "tree", suffix=".jpg", per_class=2)
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "test", arcname="test")  # order inside the archive must not matter
        tar.add(tmp_path / "tree" / "train", arcname="train")
    tree = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    archive = find_cifar10(tmp_path / "c.tar.gz", tmp_path / "cache")
    np.testing.assert_array_equal(tree.train_x, archive.train_x)
    np.testing.assert_array_equal(tree.test_y, archive.test_y)
    assert archive.train_x.shape == (20, 32, 32, 3)


def test_unreadable_image_names_its_path(tmp_path):
    write_tree(tmp_path / "tree", per_class=1)
    (tmp_path / "tree" / "train" / "dog" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"train/dog/0000.png: unreadable image"):
        find_cifar10(tmp_path / "tree", tmp_path / "cache")


def test_test_classes_must_match_train_classes(tmp_path):
    write_tree(tmp_path / "tree", per_class=1)
    (tmp_path / "tree" / "test" / "truck" / "0000.png").rename(tmp_path / "tree" / "lost.png")
    (tmp_path / "tree" / "test" / "truck").rmdir()
    with pytest.raises(DataError, match="test classes"):
        find_cifar10(tmp_path / "tree", tmp_path / "cache")


def test_auto_falls_back_only_where_the_user_named_no_location(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    notices = []
    cfg = TrainConfig(dataset="auto", download=False, synthetic_train_size=64, synthetic_test_size=16)
    data = load_dataset(cfg, notice=notices.append)
    assert data.name == "synthetic" and len(data.train_y) == 64
    assert len(notices) == 1 and "synthetic" in notices[0] and str(tmp_path / "h" / ".cache") in notices[0]
    write_tree(tmp_path / "tree", per_class=1)
    for named, why in ((tmp_path / "tree" / "train", "it is a train/ folder; give the folder that holds train/"),
                       (tmp_path / "empty", "expected cifar-10-batches-py/, cifar-10-python.tar.gz, train/ + test/")):
        named.mkdir(exist_ok=True)
        with pytest.raises(DataError, match="^" + re.escape(f"{named}: no CIFAR-10 there ({why}")):
            load_dataset(TrainConfig(dataset="auto", data_dir=str(named), download=False), notice=notices.append)
    shutil.rmtree(tmp_path / "tree" / "test")
    with pytest.raises(DataError, match="missing test/ beside train/"):
        load_dataset(TrainConfig(dataset="auto", data_dir=str(tmp_path / "tree"), download=False))


def test_the_cache_follows_any_file_changing_in_place(tmp_path):
    write_tree(tmp_path / "tree", per_class=2)
    first = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    target = tmp_path / "tree" / "train" / "cat" / "0001.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(target)  # same name, new content
    again = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    assert not np.array_equal(first.train_x, again.train_x)
    (tmp_path / "tree" / "test" / "dog" / "0000.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test/dog/0000.png: unreadable image"):
        find_cifar10(tmp_path / "tree", tmp_path / "cache")


def test_a_stale_cache_temporary_is_removed_and_a_fresh_one_kept(tmp_path):
    import os
    import time
    write_tree(tmp_path / "tree", per_class=1)
    (tmp_path / "cache").mkdir()
    stale, fresh = tmp_path / "cache" / ".cifar10-old.npz.abc.tmp", tmp_path / "cache" / ".cifar10-new.npz.def.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    find_cifar10(tmp_path / "tree", tmp_path / "cache")
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("damage, message", [
    ("string_labels", "data_batch_1: not a CIFAR-10 batch"),
    ("meta_not_a_dict", "batches.meta: expected 10 label names"),
])
def test_malformed_official_batches_are_one_line(tmp_path, damage, message):
    write_official(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    if damage == "string_labels":
        with open(folder / "data_batch_1", "wb") as f:
            pickle.dump({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": ["cat", "dog"]}, f)
    else:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump(["not", "a", "dict"], f)
    with pytest.raises(DataError, match=message):
        read_official(folder)


def test_a_zip_named_tar_gz_is_one_line(tmp_path):
    import zipfile
    with zipfile.ZipFile(tmp_path / "cifar.tar.gz", "w") as z:
        z.writestr("train/cat/0.png", b"x")
    with pytest.raises(DataError, match="cifar.tar.gz: unreadable archive") as info:
        find_cifar10(tmp_path / "cifar.tar.gz", tmp_path / "cache")
    assert "\n" not in str(info.value)  # tarfile's own message has a line per method it tried


def test_cifar10_requested_but_absent_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    with pytest.raises(DataError, match="bench/cifar10: no CIFAR-10 found .* and no download \\(download disabled"):
        load_dataset(TrainConfig(dataset="cifar10", download=False))


def test_train_subset_is_seeded_and_keeps_test_whole(tmp_path):
    write_official(tmp_path, per_batch=20)
    cfg = TrainConfig(dataset="cifar10", data_dir=str(tmp_path), train_samples=37, download=False)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert len(a.train_y) == 37 and len(a.test_y) == 20
    np.testing.assert_array_equal(a.train_x, b.train_x)


def test_synthetic_is_deterministic_by_seed():
    a, b, c = synthetic_cifar(300, 50, seed=1), synthetic_cifar(300, 50, seed=1), synthetic_cifar(300, 50, seed=2)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.train_x, c.train_x)
    assert a.train_x.shape == (300, 32, 32, 3) and a.train_x.dtype == np.uint8
    assert set(np.unique(a.train_y)) == set(range(10))


def test_synthetic_is_learnable_but_not_trivial():
    """A few hundred steps of the real trainer lift test accuracy far above chance (10%)."""
    from mgpu_core.distributed import process_group
    from mgpu_core.trainer import train_and_evaluate

    cfg = TrainConfig(dataset="synthetic", synthetic_train_size=6400, synthetic_test_size=1000, batch_size=64,
                      epochs=3, warmup_steps=0, device="cpu")
    data = load_dataset(cfg)
    with process_group(cfg) as env:
        result, _ = train_and_evaluate(cfg, env, data, log=lambda _: None)
    accuracies = [e.accuracy for e in result.evals]
    assert accuracies[0] < 0.95  # not solved in the first hundred steps
    assert max(accuracies) > 0.6




def test_locating_the_data_checks_it_as_loading_does_without_handing_back_arrays(tmp_path, monkeypatch):
    from mgpu_core import datasets
    from mgpu_core.datasets import DataLocation, locate_dataset
    monkeypatch.setattr(datasets, "default_home", lambda: tmp_path / "home")
    assert locate_dataset(TrainConfig(dataset="synthetic")) == DataLocation("synthetic", None)
    notices = []
    assert locate_dataset(TrainConfig(download=False), notice=notices.append).name == "synthetic"
    assert "using the synthetic set" in notices[0]
    write_official(tmp_path / "official")
    assert locate_dataset(TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "official"))) == DataLocation(
        "cifar10", tmp_path / "official" / "cifar-10-batches-py")
    (tmp_path / "official" / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04 cut")
    for load in (locate_dataset, load_dataset):  # the same one-line error either way
        with pytest.raises(DataError, match="test_batch: unreadable CIFAR-10 batch file"):
            load(TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "official")))
    write_tree(tmp_path / "tree", per_class=1)
    cfg = TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"))
    assert locate_dataset(cfg) == DataLocation("cifar10", tmp_path / "tree")
    [cached] = (tmp_path / "cache").glob("cifar10-*.npz")  # decoded once, into the cache every reader loads
    before = cached.stat().st_mtime_ns
    assert locate_dataset(cfg).source == tmp_path / "tree" and cached.stat().st_mtime_ns == before
    assert load_dataset(cfg).train_x.shape == (10, 32, 32, 3)
    (tmp_path / "tree" / "train" / "cat" / "0000.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="train/cat/0000.png: unreadable image"):
        locate_dataset(cfg)


def test_a_tree_of_one_class_is_named_in_the_singular(tmp_path):
    write_tree(tmp_path / "tree", per_class=1, classes=CLASSES[:1])
    with pytest.raises(DataError, match=r": 1 class folder with images under train/ \(CIFAR-10 has 10\)"):
        find_cifar10(tmp_path / "tree", tmp_path / "cache")
