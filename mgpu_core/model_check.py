"""The user's model, checked once and up front (by the sweep before any configuration and before the collective
benchmark, and by the trainer before it wraps the model): what the factory is called with, what its forward
returns, and what DDP and FSDP need to know about its parameters.

The output rule (which part of a forward's output are the logits), recorded with every result:
- a tensor of shape (N, classes): the logits ("tensor");
- a tuple, list or namedtuple whose first element is such a tensor: the first element ("first element"), as for
  Inception-style models whose training forward also returns auxiliary logits (those are not trained on);
- a mapping (dict, or a Hugging Face ModelOutput) with a "logits" tensor: that ("logits key").
Anything else is refused, naming its type.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .names import check_import  # noqa: F401 - re-exported: the check belongs with the others

CHECK_BATCH = 2
"""Samples of the check's forwards: the fewest BatchNorm takes in training mode."""
OUTPUT_RULES = ("tensor", "first element", "logits key")


@dataclass(frozen=True)
class ModelCheck:
    factory_call: str
    """How the model was made: "registry", "num_classes" (factory(num_classes=...)) or "no arguments" (a
    factory without parameters, as in the pytorch-cifar zoos; its output size was checked instead)."""
    output_rule: str
    """Which part of the forward's output are the logits: one of OUTPUT_RULES, or "<rule> in training, <rule> in
    eval" where the two modes differ (Inception: auxiliary logits in training only)."""
    unused_parameters: tuple[str, ...]
    """Parameters that get no gradient from the loss (e.g. an auxiliary head): DDP runs with
    find_unused_parameters for them (it fails otherwise)."""
    shared_parameters: tuple[tuple[str, ...], ...]
    """Names under which one parameter appears in several modules (tied weights): fsdp shards them as one unit."""

    def to_dict(self) -> dict:
        return asdict(self)


def call_factory(name: str, factory: Callable, num_classes: int) -> tuple[nn.Module, str]:
    """(model, how it was called): with num_classes where the factory takes it, without arguments where it takes
    none; a factory that fails or returns no nn.Module is a ConfigError."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: call it as documented
        params = None
    takes_kwargs = params is None or any(p.kind is p.VAR_KEYWORD or p.name == "num_classes" for p in params)
    required = [p.name for p in params or () if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                    p.POSITIONAL_OR_KEYWORD,
                                                                                    p.KEYWORD_ONLY)
                and p.name != "num_classes"]
    if required:
        raise ConfigError(f"model: {name} requires {', '.join(required)}; the harness calls it with num_classes "
                          "only (or with no arguments)")
    how = "num_classes" if takes_kwargs else "no arguments"
    try:
        model = factory(num_classes=num_classes) if takes_kwargs else factory()
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        call = f"num_classes={num_classes}" if takes_kwargs else ""
        raise ConfigError(f"model: {name}({call}) failed ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: {name} returned {type(model).__name__}, not a torch.nn.Module")
    return model, how


def logits_of(output) -> torch.Tensor:
    """The logits inside a forward's output, by the module's output rule; anything else is a ConfigError."""
    return _split(output)[0]


def _split(output) -> tuple[torch.Tensor, str]:
    if isinstance(output, torch.Tensor):
        return output, "tensor"
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"], "logits key"
        raise ConfigError(f"model: forward returned a {type(output).__name__} without a 'logits' tensor (keys: "
                          f"{', '.join(map(str, list(output)[:5]))}); return logits, a tuple starting with them, or "
                          "a dict with 'logits'")
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0], "first element"
    raise ConfigError(f"model: forward returned {type(output).__name__}, not logits: return a tensor (N, classes), "
                      "a tuple starting with it, or a dict with 'logits'")


OTHER_SIZES = (32, 224)
"""Sizes a failed forward is tried at once more, to tell a fault of --image-size from one of the model's own."""


def _forward_fault(probe: nn.Module, exc: Exception, train: bool, image_size: int, device) -> ConfigError:
    """The one-line error of a forward that raised at `image_size`: where it runs at another size, --image-size is
    the fault (naming the sizes it ran at); where it fails at every size tried, the model is."""
    mode = "training" if train else "eval"
    ran = []
    for size in (s for s in OTHER_SIZES if s != image_size):
        try:
            with torch.no_grad():
                probe.train(train)
                probe(torch.randn(CHECK_BATCH, 3, size, size, device=device))
            ran.append(size)
        except Exception:  # noqa: BLE001 - still failing: the size was not the cause there either
            pass
    what = f"{type(exc).__name__}: {_first_line(exc)}"
    if ran:
        return ConfigError(f"image_size: {mode}-mode forward at {image_size}x{image_size} failed ({what}); choose an "
                           f"--image-size the model takes (it ran at {', '.join(f'{n}x{n}' for n in ran)})")
    tried = ", ".join(f"{n}x{n}" for n in sorted({image_size, *OTHER_SIZES}))
    return ConfigError(f"model: its {mode}-mode forward raised {what} at every size tried ({tried}): a fault in the "
                       "model, not in --image-size")


def check_model_instance(model: nn.Module, how: str, num_classes: int, image_size: int, data_size: int,
                         augment: bool, device: torch.device | None = None) -> ModelCheck:
    """Forwards of CHECK_BATCH random images at image_size in training mode (with a backward, to find parameters
    without gradient) and in eval mode, on a copy (the model, its BatchNorm statistics and the random state are
    left as they were). ConfigError: no trainable parameters, logits of the wrong shape, an output without logits,
    or a forward that fails at this size (one line, naming --image-size)."""
    from .augment import random_crop_flip
    from .pipelines import CROP_PADDING
    device = device or torch.device("cpu")
    if not any(p.requires_grad for p in model.parameters()):  # else the backward below blames --image-size
        raise ConfigError("model: no trainable parameters (nothing to train, nothing for ddp to all-reduce)")
    if augment and data_size <= CROP_PADDING:
        raise ConfigError(f"image_size: {data_size}x{data_size} images cannot take the augmentation's reflect "
                          f"padding of {CROP_PADDING} pixels; use --image-size > {CROP_PADDING} or --no-augment")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if augment:
            images = torch.zeros(CHECK_BATCH, 3, data_size, data_size, dtype=torch.uint8, device=device)
            random_crop_flip(images, torch.Generator(device=device), CROP_PADDING)
        probe = copy.deepcopy(model).to(device)
        x = torch.randn(CHECK_BATCH, 3, image_size, image_size, device=device)
        rules = []
        for train in (True, False):
            probe.train(train)
            try:
                with torch.enable_grad() if train else torch.no_grad():
                    logits, rule = _split(probe(x))
                    _check_shape(logits, num_classes, how, train)
                    if train:
                        F.cross_entropy(logits.float(), torch.zeros(CHECK_BATCH, dtype=torch.long,
                                                                    device=device)).backward()
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the model raises at this size
                raise _forward_fault(probe, exc, train, image_size, device) from None
            rules.append(rule)
        unused = tuple(n for n, p in probe.named_parameters() if p.requires_grad and p.grad is None)
    rule = rules[0] if rules[0] == rules[1] else f"{rules[0]} in training, {rules[1]} in eval"  # e.g. Inception
    return ModelCheck(how, rule, unused, shared_parameters(model))


def build_and_check(cfg, num_classes: int, data_size: int,
                    device: torch.device | None = None) -> tuple[nn.Module, ModelCheck]:
    """cfg's model, fresh (seeded by the caller), and its check (check_model_instance). `cfg` is a TrainConfig;
    `data_size` the stored images' height and width (augmentation runs at it, before any resize)."""
    from .models import make_model
    model, how = make_model(cfg.model, num_classes, cfg.image_size)
    return model, check_model_instance(model, how, num_classes, cfg.image_size, data_size, cfg.hparams.augment,
                                       device)


def _check_shape(logits: torch.Tensor, num_classes: int, how: str, train: bool) -> None:
    if tuple(logits.shape) != (CHECK_BATCH, num_classes):
        hint = (" (a factory without arguments must output the dataset's classes)" if how == "no arguments"
                else "")
        raise ConfigError(f"model: {'training' if train else 'eval'}-mode forward gave logits of shape "
                          f"{tuple(logits.shape)}, expected ({CHECK_BATCH}, {num_classes}){hint}")


def shared_parameters(model: nn.Module) -> tuple[tuple[str, ...], ...]:
    """Groups of names under which the same parameter object is reachable (tied weights)."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return tuple(tuple(group) for group in names.values() if len(group) > 1)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
