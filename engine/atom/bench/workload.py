"""Synthetic prompts of exact token lengths, shared by the offline and serving benchmarks."""

from __future__ import annotations

import random


def random_prompts(vocab_size: int, num: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab_size) for _ in range(length)] for _ in range(num)]
