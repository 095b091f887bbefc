"""Data as people have it (issue 21, kind 4): symlinked class folders, hidden files, the official archive, a HOME
that cannot be written, plain-colour images, non-finite inputs."""

import math
import os
import tarfile

import numpy as np
import pytest
from helpers import write_official, write_tree
from PIL import Image

from mgpu_core.cifar_files import _cache_key, find_cifar10
from mgpu_core.config import TrainConfig
from mgpu_core.datasets import load_dataset
from mgpu_core.distributed import process_group
from mgpu_core.image_arrays import DataError, ImageArrays
from mgpu_core.synthetic import synthetic_cifar
from mgpu_core.trainer import DivergedError, train_and_evaluate


def linked_tree(tmp_path, link_files=False):
    """A tree whose train/cat folder (or its files) are symlinks into an 'elsewhere' folder."""
    write_tree(tmp_path / "tree", per_class=3)
    real = tmp_path / "elsewhere" / "cat"
    real.parent.mkdir()
    os.rename(tmp_path / "tree" / "train" / "cat", real)
    if link_files:
        (tmp_path / "tree" / "train" / "cat").mkdir()
        for f in real.iterdir():
            (tmp_path / "tree" / "train" / "cat" / f.name).symlink_to(f)
    else:
        (tmp_path / "tree" / "train" / "cat").symlink_to(real, target_is_directory=True)
    return real


@pytest.mark.parametrize("link_files", [False, True])
def test_images_deleted_behind_a_link_are_not_trained_on_from_the_old_cache(tmp_path, link_files):
    real = linked_tree(tmp_path, link_files)
    first = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    assert len(first.train_y) == 30
    key = _cache_key(tmp_path / "tree")
    sorted(real.iterdir())[0].unlink()
    if link_files:
        (tmp_path / "tree" / "train" / "cat" / "0000.png").unlink()  # the dangling link goes too
    assert _cache_key(tmp_path / "tree") != key
    assert len(find_cifar10(tmp_path / "tree", tmp_path / "cache").train_y) == 29


def add_hidden(root):
    """What macOS, Finder and git leave in a tree: AppleDouble files, .DS_Store, dot-folders."""
    for folder in (root / "train" / "cat", root / "test" / "dog"):
        (folder / "._0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        (folder / ".DS_Store").write_bytes(b"Bud1")
    (root / "train" / ".git").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train" / ".git" / "0000.png")
    (root / "train" / ".DS_Store").write_bytes(b"Bud1")


def test_hidden_files_are_skipped_in_folders(tmp_path):
    write_tree(tmp_path / "tree", per_class=2)
    add_hidden(tmp_path / "tree")
    data = find_cifar10(tmp_path / "tree", tmp_path / "cache")
    assert len(data.train_y) == 20 and len(data.classes) == 10


@pytest.mark.parametrize("top", ["cifar", ""])
def test_hidden_files_and_macosx_are_skipped_in_archives(tmp_path, top):
    write_tree(tmp_path / "tree", per_class=2)
    add_hidden(tmp_path / "tree")
    (tmp_path / "__MACOSX" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07")
    with tarfile.open(tmp_path / "cifar.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname=top or ".")
        tar.add(tmp_path / "__MACOSX", arcname=f"{top}/__MACOSX" if top else "__MACOSX")
    data = find_cifar10(tmp_path / "cifar.tar.gz", tmp_path / "cache")
    assert len(data.train_y) == 20


@pytest.mark.parametrize("given", ["file", "folder"])
def test_the_official_python_archive_is_read_directly(tmp_path, given):
    written = write_official(tmp_path / "src")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (tmp_path / "data").mkdir()
    os.rename(tmp_path / "cifar-10-python.tar.gz", tmp_path / "data" / "cifar-10-python.tar.gz")
    where = tmp_path / "data" / "cifar-10-python.tar.gz" if given == "file" else tmp_path / "data"
    data = find_cifar10(where, tmp_path / "cache")
    assert np.array_equal(data.test_x, written["test_batch"][0]) and len(data.train_y) == 30
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing cached


@pytest.mark.parametrize("home", ["under-a-file", "cache-under-a-file"])
def test_a_home_that_cannot_be_written_falls_back_to_a_temporary_cache_with_a_notice(tmp_path, monkeypatch, home):
    write_tree(tmp_path / "tree", per_class=1)
    (tmp_path / "plain-file").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "plain-file" / "home"))  # mkdir below a file fails, as read-only
    cache = None if home == "under-a-file" else str(tmp_path / "plain-file" / "cache")
    notices = []
    data = load_dataset(TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "tree"), cache_dir=cache),
                        notice=notices.append)
    assert len(data.train_y) == 10
    assert len(notices) == 1 and "--cache-dir" in notices[0] and "cannot be written" in notices[0]


def test_no_home_at_all_does_not_stop_an_import_or_a_run(tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "HOME"}
    code = ("import mgpu_core.datasets as d; from mgpu_core.config import TrainConfig; "
            "print(len(d.load_dataset(TrainConfig(dataset='synthetic', synthetic_train_size=8, "
            "synthetic_test_size=4)).train_y))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "8", proc.stderr


def plain(colours):
    """Images of one plain colour each (a small tree of plain-colour images)."""
    x = np.stack([np.full((32, 32, 3), c, np.uint8) for c in colours])
    y = np.arange(len(colours)) % 10
    return ImageArrays("cifar10", "plain", tuple(f"c{i}" for i in range(10)), x, y, x[:10], y[:10])


@pytest.mark.parametrize("colours", [[(200, 200, 200)] * 64, [(200, v, 7) for v in range(64)]])
def test_statistics_of_constant_channels_are_finite(colours):
    mean, std = plain(colours).channel_stats()
    assert all(math.isfinite(v) for v in (*mean, *std)) and all(s > 0 for s in std)
    assert mean[0] == pytest.approx(200 / 255)


def test_statistics_match_numpy_on_real_looking_data():
    data = synthetic_cifar(5000, 10, seed=1)
    mean, std = data.channel_stats()
    flat = data.train_x.reshape(-1, 3) / 255.0
    assert np.allclose(mean, flat.mean(0)) and np.allclose(std, flat.std(0))


def run(data, **overrides):
    cfg = TrainConfig(**({"device": "cpu", "batch_size": 16, "epochs": 1, "warmup_steps": 0, "augment": False}
                         | overrides))
    with process_group(cfg) as env:
        return train_and_evaluate(cfg, env, data, log=lambda _: None)[0]


def test_plain_colour_images_train(tmp_path):
    result = run(plain([(200, 200, 200)] * 64))
    assert math.isfinite(result.epochs[0].loss)


def test_non_finite_inputs_are_told_apart_from_divergence(monkeypatch):
    data = synthetic_cifar(64, 10, seed=0)
    with pytest.raises(DivergedError, match="lower --lr"):
        run(data, lr=1e30, optimizer="sgd")
    monkeypatch.setattr(ImageArrays, "channel_stats", lambda self: ((0.5,) * 3, (float("nan"),) * 3))
    with pytest.raises(DataError, match="inputs hold non-finite values"):
        run(data)
    monkeypatch.setattr(ImageArrays, "channel_stats", lambda self: ((0.5,) * 3, (0.0,) * 3))
    with pytest.raises(DataError, match="inputs hold non-finite values"):
        run(data)


def test_images_of_other_modes_are_converted_and_said(tmp_path):
    write_tree(tmp_path / "tree", per_class=2)
    gray = tmp_path / "tree" / "train" / "cat" / "0000.png"
    Image.open(gray).convert("L").save(gray)
    notices = []
    data = find_cifar10(tmp_path / "tree", tmp_path / "cache", notice=notices.append)
    assert data.train_x.shape == (20, 32, 32, 3)
    assert [n for n in notices if "converted to RGB" in n] == [
        f"notice: {tmp_path / 'tree'}: converted to RGB images of other modes (1 L; PIL's modes, L is grayscale)"]
