"""Reading CIFAR-10 from disk: torchvision's python format, or an image-folder tree (plain or .tar.gz), cached."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .files import atomic_write
from .image_arrays import DataError, ImageArrays

OFFICIAL_DIR = "cifar-10-batches-py"
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
"""The archive torchvision downloads (and www.cs.toronto.edu serves): OFFICIAL_DIR inside, read without extracting."""
OFFICIAL_FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DOWNLOAD_TIMEOUT_S = 20.0
STALE_TMP_S = 600.0
"""A cache temporary untouched this long belongs to a writer that died; it is removed."""


def _layout(data_dir: Path) -> tuple[str, Path] | None:
    """Which layout `data_dir` holds, by names alone: ("official-archive" | "archive" | "official" | "tree", its
    path), or None. The official cifar-10-python.tar.gz may be given or lie inside `data_dir`."""
    if data_dir.is_dir() and (data_dir / OFFICIAL_ARCHIVE).is_file() and not (data_dir / OFFICIAL_DIR).is_dir():
        data_dir = data_dir / OFFICIAL_ARCHIVE
    if data_dir.is_file() and data_dir.name.endswith((".tar.gz", ".tgz", ".tar")):
        return ("official-archive" if _is_official_archive(data_dir) else "archive"), data_dir
    if (data_dir / OFFICIAL_DIR).is_dir():
        return "official", data_dir / OFFICIAL_DIR
    if data_dir.name == OFFICIAL_DIR and data_dir.is_dir():
        return "official", data_dir
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        return "tree", data_dir
    return None


def _decoder(kind: str, source: Path, notice=print):
    """The function that decodes an image archive or tree into arrays (saying once what it converted)."""
    images = _tar_images if kind == "archive" else _folder_images
    return lambda: _read_image_tree(images(source), str(source), notice)


def find_cifar10(data_dir: Path, cache_dir: Path, notice=print) -> ImageArrays | None:
    """CIFAR-10 from whatever layout `data_dir` holds, or None if it holds none: the official python archive
    (cifar-10-python.tar.gz, given or inside `data_dir`) read directly, its extracted folder, or an image tree, plain
    or archived. Decoded image trees are cached in `cache_dir` (or a temporary folder, with a `notice`, where it
    cannot be written)."""
    found = _layout(data_dir)
    if found is None:
        return None
    kind, source = found
    if kind == "official-archive":
        return read_official_archive(source)
    if kind == "official":
        return read_official(source)
    return _cached(source, cache_dir, _decoder(kind, source, notice), notice)


def locate_cifar10(data_dir: Path, cache_dir: Path, notice=print) -> Path | None:
    """Where CIFAR-10 is in `data_dir` (the batches folder, the archive or the tree), checked as find_cifar10 checks
    it but without handing back the arrays: the python batches are unpickled and checked, an image archive or tree
    is decoded into the cache unless a cache of its current contents exists (every reader then loads the cache).
    None if `data_dir` holds no layout; DataError (one line) for missing or corrupt data."""
    found = _layout(data_dir)
    if found is None:
        return None
    kind, source = found
    if kind == "official-archive":
        read_official_archive(source)
    elif kind == "official":
        read_official(source)
    elif not _cache_path(source, cache_dir).exists():
        _cached(source, cache_dir, _decoder(kind, source, notice), notice)
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
    archives = sorted(p for p in data_dir.glob("*") if p.is_file() and not p.name.startswith(".")
                      and p.name.endswith((".tar.gz", ".tgz", ".tar")))
    if archives:  # only the official archive is looked for inside a folder; an image-tree archive is given itself
        return f"it holds an archive: give the archive itself, --data-dir {archives[0]}"
    return f"expected {OFFICIAL_DIR}/, {OFFICIAL_ARCHIVE}, train/ + test/, or a .tar.gz of them"


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


def read_official(folder: Path) -> ImageArrays:
    """The python-pickle batches torchvision downloads: data_batch_1..5, test_batch, batches.meta."""
    return _official(str(folder), lambda name: _unpickle(folder / name, folder / name))


def _unreadable(archive: Path, exc: Exception) -> DataError:
    """One line for an archive tarfile cannot open: its error lists every method it tried, one per line."""
    lines = [line.strip().removeprefix("- ") for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
    tried = f"{lines[0].rstrip(':')}: {', '.join(lines[1:])}" if len(lines) > 1 else lines[0]
    return DataError(f"{archive}: unreadable archive ({tried})")


def _is_official_archive(archive: Path) -> bool:
    try:
        with tarfile.open(archive) as tar:
            return any(Path(m.name).parts[-2:] == (OFFICIAL_DIR, "batches.meta") for m in tar.getmembers())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _unreadable(archive, exc) from None


def read_official_archive(archive: Path) -> ImageArrays:
    """The official cifar-10-python.tar.gz, read straight from the archive (nothing extracted, nothing cached:
    unpickling is as fast as reading a cache)."""
    try:
        with tarfile.open(archive) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).parent.name == OFFICIAL_DIR and not _hidden(m.name)}

            def load(name: str) -> dict:
                if name not in members:
                    raise DataError(f"{archive}: missing {OFFICIAL_DIR}/{name}")
                return _unpickle_bytes(tar.extractfile(members[name]).read(), f"{archive}:{members[name].name}")

            return _official(str(archive), load)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _unreadable(archive, exc) from None


def _official(source: str, load) -> ImageArrays:
    """The official batches through `load(name) -> unpickled object`."""
    meta = load("batches.meta")
    if not isinstance(meta, dict) or len(meta.get("label_names", ())) != 10:
        raise DataError(f"{source}/batches.meta: expected 10 label names")
    train = [_batch(load(f"data_batch_{i}"), f"{source}/data_batch_{i}") for i in range(1, 6)]
    test = _batch(load("test_batch"), f"{source}/test_batch")

    def images(batches: list[dict]) -> np.ndarray:
        flat = np.concatenate([b["data"] for b in batches])
        return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))

    def labels(batches: list[dict]) -> np.ndarray:
        return np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])

    return ImageArrays(
        name="cifar10", source=source, classes=tuple(meta["label_names"]),
        train_x=images(train), train_y=labels(train), test_x=images([test]), test_y=labels([test]),
    )


def _batch(batch, path: str) -> dict:
    """One unpickled batch, checked: N rows of 3072 uint8 pixels and N labels in 0..9."""
    data, labels = (batch.get("data"), batch.get("labels")) if isinstance(batch, dict) else (None, None)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072
            or labels is None or len(labels) != len(data)
            or not all(isinstance(y, int | np.integer) and 0 <= y < 10 for y in labels)):
        raise DataError(f"{path}: not a CIFAR-10 batch (expected N x 3072 uint8 pixels and N labels in 0..9)")
    return batch


def _unpickle(path: Path, name: Path) -> dict:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing CIFAR-10 batch file") from None
    return _unpickle_bytes(blob, str(name))


def _unpickle_bytes(blob: bytes, name: str) -> dict:
    try:
        return pickle.loads(blob, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - truncated or corrupted pickles raise many kinds
        raise DataError(f"{name}: unreadable CIFAR-10 batch file ({type(exc).__name__})") from None


def _hidden(name: str) -> bool:
    """Files no reader takes: dot-files and dot-folders (.DS_Store, AppleDouble ._* files, .git) and macOS's
    __MACOSX/ folder of an archive, anywhere in the path."""
    return any(part.startswith(".") and part not in (".", "..") or part == "__MACOSX" for part in Path(name).parts)


def tree_files(root: Path) -> Iterator[tuple[str, str, Path]]:
    """(split, class, path) for every image of root/{train,test}/<class>/, hidden files skipped, symlinked class
    folders and files followed: the one walk that both the decoder and the cache key take."""
    for split in ("train", "test"):
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir() and not _hidden(p.name)):
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and not _hidden(path.name) and path.is_file():
                    yield split, class_dir.name, path


def _folder_images(root: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(split, class, path, encoded bytes) for every image of tree_files(root)."""
    for split, cls, path in tree_files(root):
        yield split, cls, str(path), path.read_bytes()


def _tar_images(archive: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Same as _folder_images, straight from an archive (an optional single top folder is allowed)."""
    try:
        with tarfile.open(archive) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):  # same order as the extracted tree
                parts = Path(member.name).parts
                if (not member.isfile() or Path(member.name).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 3
                        or _hidden(member.name)):
                    continue
                split, cls = parts[-3], parts[-2]
                if split in ("train", "test"):
                    yield split, cls, f"{archive}:{member.name}", tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _unreadable(archive, exc) from None


def _read_image_tree(items: Iterator[tuple[str, str, str, bytes]], source: str, notice=print) -> ImageArrays:
    """The arrays of an image tree (train/<class>/, test/<class>/), every image converted to RGB; a `notice` says how
    many were in another mode (grayscale, palette, RGBA), since the user may not know their data holds them."""
    images: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}
    converted: dict[str, int] = {}
    for split, cls, path, blob in items:
        try:
            with Image.open(io.BytesIO(blob)) as im:
                if im.mode != "RGB":
                    converted[im.mode] = converted.get(im.mode, 0) + 1
                pixels = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - PIL raises several kinds for broken files
            raise DataError(f"{path}: unreadable image ({type(exc).__name__})") from None
        if pixels.shape != (32, 32, 3):
            raise DataError(f"{path}: expected a 32x32 image, got {pixels.shape[1]}x{pixels.shape[0]}")
        images[split].append(pixels)
        names[split].append(cls)
    if converted:
        modes = ", ".join(f"{n:,} {mode}" for mode, n in sorted(converted.items()))
        notice(f"notice: {source}: converted to RGB images of other modes ({modes}; PIL's modes, L is grayscale)")
    classes = tuple(sorted(set(names["train"])))  # ImageFolder's convention; CIFAR-10's names sort in label order
    for split in ("train", "test"):
        if not images[split]:
            raise DataError(f"{source}: no images under {split}/<class>/")
    if len(classes) != 10:
        folders = f"{len(classes)} class folder{'' if len(classes) == 1 else 's'}"
        raise DataError(f"{source}: {folders} with images under train/ (CIFAR-10 has 10)")
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
    archive or of every image the decoder reads (a stat each, through links: about 0.1 s for CIFAR-10's 60,000
    images)."""
    stats = [str(source.resolve())]
    if source.is_file():
        files = [source]
    else:
        files = [path for _, _, path in tree_files(source)]  # the decoder's walk: links followed, hidden skipped
    for p in files:
        st = p.stat()
        stats.append((str(p.relative_to(source)) if p != source else p.name, st.st_size, st.st_mtime_ns))
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]


def _cache_path(source: Path, cache_dir: Path) -> Path:
    return cache_dir / f"cifar10-{_cache_key(source)}.npz"


def writable_cache(cache_dir: Path, notice=print) -> Path:
    """`cache_dir` where it can be made and written; else a folder in the system's temporary folder, with a notice
    naming --cache-dir (a read-only or missing HOME must not stop a run: the cache is only a speed-up)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if os.access(cache_dir, os.W_OK | os.X_OK):
            return cache_dir
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"mgpu-bench-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"
    fallback.mkdir(parents=True, exist_ok=True)
    notice(f"notice: {cache_dir} cannot be written; caching decoded images in {fallback} instead (give --cache-dir "
           "to choose)")
    return fallback


def _cached(source: Path, cache_dir: Path, decode, notice=print) -> ImageArrays:
    """Decode once, then serve the uint8 arrays from cache_dir (written atomically, so a crash leaves no torn file)."""
    if not _cache_path(source, cache_dir).exists():
        cache_dir = writable_cache(cache_dir, notice)
    path = _cache_path(source, cache_dir)
    if path.exists():
        try:
            with np.load(path) as z:
                return ImageArrays(name="cifar10", source=str(source), classes=tuple(z["classes"].tolist()),
                                   train_x=z["train_x"], train_y=z["train_y"], test_x=z["test_x"], test_y=z["test_y"])
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            try:
                path.unlink(missing_ok=True)
            except OSError:  # a read-only cache folder: rebuild elsewhere
                cache_dir = writable_cache(cache_dir.parent / f"{cache_dir.name}-unwritable", notice)
                path = cache_dir / path.name
    data = decode()
    for stale in cache_dir.glob(".cifar10-*.npz.*.tmp"):  # left by a writer killed mid-write (SIGKILL, power cut)
        if time.time() - stale.stat().st_mtime > STALE_TMP_S:
            stale.unlink(missing_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, classes=np.array(data.classes), train_x=data.train_x, train_y=data.train_y,
                 test_x=data.test_x, test_y=data.test_y)
    return data
