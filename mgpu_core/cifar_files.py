"""Reading CIFAR-10 from disk: torchvision's python format, or an image-folder tree (plain or .tar.gz), cached."""

from __future__ import annotations

import hashlib
import io
import pickle
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .files import atomic_write
from .image_arrays import DataError, ImageArrays

OFFICIAL_DIR = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DOWNLOAD_TIMEOUT_S = 20.0
STALE_TMP_S = 600.0
"""A cache temporary untouched this long belongs to a writer that died; it is removed."""


def _layout(data_dir: Path) -> tuple[str, Path] | None:
    """Which layout `data_dir` holds, by names alone: ("archive" | "official" | "tree", its path), or None."""
    if data_dir.is_file() and data_dir.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "archive", data_dir
    if (data_dir / OFFICIAL_DIR).is_dir():
        return "official", data_dir / OFFICIAL_DIR
    if data_dir.name == OFFICIAL_DIR and data_dir.is_dir():
        return "official", data_dir
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        return "tree", data_dir
    return None


def _decoder(kind: str, source: Path):
    """The function that decodes an image archive or tree into arrays."""
    images = _tar_images if kind == "archive" else _folder_images
    return lambda: _read_image_tree(images(source), str(source))


def find_cifar10(data_dir: Path, cache_dir: Path) -> ImageArrays | None:
    """CIFAR-10 from whatever layout `data_dir` holds, or None if it holds none."""
    found = _layout(data_dir)
    if found is None:
        return None
    kind, source = found
    if kind == "official":
        return read_official(source)
    return _cached(source, cache_dir, _decoder(kind, source))


def locate_cifar10(data_dir: Path, cache_dir: Path) -> Path | None:
    """Where CIFAR-10 is in `data_dir` (the batches folder, the archive or the tree), checked as find_cifar10 checks
    it but without handing back the arrays: the python batches are unpickled and checked, an image archive or tree
    is decoded into the cache unless a cache of its current contents exists (every reader then loads the cache).
    None if `data_dir` holds no layout; DataError (one line) for missing or corrupt data."""
    found = _layout(data_dir)
    if found is None:
        return None
    kind, source = found
    if kind == "official":
        check_official(source)
    elif not _cache_path(source, cache_dir).exists():
        _cached(source, cache_dir, _decoder(kind, source))
    return source


def layout_problem(data_dir: Path) -> str:
    """What a folder lacks to be one of the layouts find_cifar10 reads, in a few words."""
    if data_dir.is_file():
        return "a file that is not a .tar.gz, .tgz or .tar archive"
    has = {name for name in ("train", "test", OFFICIAL_DIR) if (data_dir / name).is_dir()}
    if "train" in has or "test" in has:
        return f"missing {'test/' if 'train' in has else 'train/'} beside {'train/' if 'train' in has else 'test/'}"
    if data_dir.name in ("train", "test"):
        return f"it is a {data_dir.name}/ folder; give the folder that holds train/ and test/"
    return f"expected {OFFICIAL_DIR}/, train/ + test/, or a .tar.gz of them"


def download_cifar10(data_dir: Path) -> str | None:
    """torchvision's download into `data_dir` (its python batches), bounded by a socket timeout: None when it
    worked, else the reason it did not."""
    from torchvision.datasets import CIFAR10

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(data_dir), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - any network or archive failure means "not available"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        socket.setdefaulttimeout(previous)
    return None


def check_official(folder: Path) -> tuple[dict, list[dict], dict]:
    """The python-pickle batches torchvision downloads, each unpickled and checked: (batches.meta, data_batch_1..5,
    test_batch). DataError naming the first missing, unreadable or malformed file."""
    meta = _unpickle(folder / "batches.meta")
    if not isinstance(meta, dict) or len(meta.get("label_names", ())) != 10:
        raise DataError(f"{folder / 'batches.meta'}: expected 10 label names")
    return meta, [_batch(folder / f"data_batch_{i}") for i in range(1, 6)], _batch(folder / "test_batch")


def read_official(folder: Path) -> ImageArrays:
    """The python-pickle batches torchvision downloads: data_batch_1..5, test_batch, batches.meta."""
    meta, train, test = check_official(folder)

    def images(batches: list[dict]) -> np.ndarray:
        flat = np.concatenate([b["data"] for b in batches])
        return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))

    def labels(batches: list[dict]) -> np.ndarray:
        return np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])

    return ImageArrays(
        name="cifar10", source=str(folder), classes=tuple(meta["label_names"]),
        train_x=images(train), train_y=labels(train), test_x=images([test]), test_y=labels([test]),
    )


def _batch(path: Path) -> dict:
    """One batch file, checked: N rows of 3072 uint8 pixels and N labels in 0..9."""
    batch = _unpickle(path)
    data, labels = (batch.get("data"), batch.get("labels")) if isinstance(batch, dict) else (None, None)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072
            or labels is None or len(labels) != len(data)
            or not all(isinstance(y, int | np.integer) and 0 <= y < 10 for y in labels)):
        raise DataError(f"{path}: not a CIFAR-10 batch (expected N x 3072 uint8 pixels and N labels in 0..9)")
    return batch


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"{path}: missing CIFAR-10 batch file") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupted pickles raise many kinds
        raise DataError(f"{path}: unreadable CIFAR-10 batch file ({type(exc).__name__})") from None


def _folder_images(root: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(split, class, path, encoded bytes) for every image of root/{train,test}/<class>/."""
    for split in ("train", "test"):
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield split, class_dir.name, str(path), path.read_bytes()


def _tar_images(archive: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Same as _folder_images, straight from an archive (an optional single top folder is allowed)."""
    try:
        with tarfile.open(archive) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):  # same order as the extracted tree
                parts = Path(member.name).parts
                if not member.isfile() or Path(member.name).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 3:
                    continue
                split, cls = parts[-3], parts[-2]
                if split in ("train", "test"):
                    yield split, cls, f"{archive}:{member.name}", tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: unreadable archive ({exc})") from None


def _read_image_tree(items: Iterator[tuple[str, str, str, bytes]], source: str) -> ImageArrays:
    images: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}
    for split, cls, path, blob in items:
        try:
            with Image.open(io.BytesIO(blob)) as im:
                pixels = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - PIL raises several kinds for broken files
            raise DataError(f"{path}: unreadable image ({type(exc).__name__})") from None
        if pixels.shape != (32, 32, 3):
            raise DataError(f"{path}: expected a 32x32 image, got {pixels.shape[1]}x{pixels.shape[0]}")
        images[split].append(pixels)
        names[split].append(cls)
    classes = tuple(sorted(set(names["train"])))  # ImageFolder's convention; CIFAR-10's names sort in label order
    for split in ("train", "test"):
        if not images[split]:
            raise DataError(f"{source}: no images under {split}/<class>/")
    if len(classes) != 10:
        raise DataError(f"{source}: {len(classes)} class folders with images under train/ (CIFAR-10 has 10)")
    if set(names["test"]) != set(classes):
        raise DataError(f"{source}: test classes {sorted(set(names['test']))} differ from "
                        f"train classes {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    return ImageArrays(
        name="cifar10", source=source, classes=classes,
        train_x=np.stack(images["train"]), train_y=np.array([index[c] for c in names["train"]], dtype=np.int64),
        test_x=np.stack(images["test"]), test_y=np.array([index[c] for c in names["test"]], dtype=np.int64),
    )


def _cache_key(source: Path) -> str:
    """Changes whenever any file's content could have: the source's path, and the name, size and mtime of the
    archive or of every file of the tree (a stat each: about 0.1 s for CIFAR-10's 60,000 images)."""
    stats = [str(source.resolve())]
    if source.is_file():
        files = [source]
    else:
        files = sorted(p for split in ("train", "test") for p in (source / split).rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        stats.append((str(p.relative_to(source)) if p != source else p.name, st.st_size, st.st_mtime_ns))
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]


def _cache_path(source: Path, cache_dir: Path) -> Path:
    return cache_dir / f"cifar10-{_cache_key(source)}.npz"


def _cached(source: Path, cache_dir: Path, decode) -> ImageArrays:
    """Decode once, then serve the uint8 arrays from cache_dir (written atomically, so a crash leaves no torn file)."""
    path = _cache_path(source, cache_dir)
    if path.exists():
        try:
            with np.load(path) as z:
                return ImageArrays(name="cifar10", source=str(source), classes=tuple(z["classes"].tolist()),
                                   train_x=z["train_x"], train_y=z["train_y"], test_x=z["test_x"], test_y=z["test_y"])
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            path.unlink(missing_ok=True)
    data = decode()
    for stale in cache_dir.glob(".cifar10-*.npz.*.tmp"):  # left by a writer killed mid-write (SIGKILL, power cut)
        if time.time() - stale.stat().st_mtime > STALE_TMP_S:
            stale.unlink(missing_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, classes=np.array(data.classes), train_x=data.train_x, train_y=data.train_y,
                 test_x=data.test_x, test_y=data.test_y)
    return data
