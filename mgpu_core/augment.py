"""Random crop (reflect padding) and horizontal flip for a whole uint8 batch on its device, as one gather."""

from __future__ import annotations

import torch


def reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map positions in a reflect-padded axis (-p .. size-1+p) back into 0 .. size-1, as F.pad(mode='reflect')."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def crop_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
              padding: int) -> torch.Tensor:
    """Crop each image of (B, C, H, W) at (top, left) of its reflect-padded version, mirrored where `flip`.
    Indexing instead of padding keeps the batch uint8 and makes one pass over memory."""
    b, c, h, w = images.shape
    rows = reflect(top[:, None] + torch.arange(h, device=images.device) - padding, h)
    cols = reflect(left[:, None] + torch.arange(w, device=images.device) - padding, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """torchvision's RandomCrop(padding, padding_mode='reflect') + RandomHorizontalFlip, batched, on the device."""
    b = images.shape[0]
    offsets = torch.randint(0, 2 * padding + 1, (2, b), device=images.device, generator=generator)
    flip = torch.rand(b, device=images.device, generator=generator) < 0.5
    return crop_flip(images, offsets[0], offsets[1], flip, padding)
