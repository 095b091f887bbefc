"""A dataset whose items take a module-level lock: what a library lock held by another thread at fork time looks
like to a DataLoader worker (the cause of the intermittent DataLoader hang, issue 21 kind 9)."""

import threading

import torch
from torch.utils.data import Dataset

LOCK = threading.Lock()


class LockedDataset(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        with LOCK:
            return torch.zeros(3), i
