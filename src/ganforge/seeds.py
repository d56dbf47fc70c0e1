"""Seeds as people write them (`1,7,42`, `0-99`, `0-3,10`), kept as lazy ranges so that `0-99999999`
costs three numbers, not a list; and the check that a seed is one (a whole number from 0 to 2**63 - 1).
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections.abc import Iterable, Iterator, Sequence

from ganforge.errors import GeneratorError

MAX_SEED = 2**63 - 1  # a seed is a signed 64-bit integer everywhere it goes (torch, numpy, file names)
_SEED_PART = re.compile(r"(-?[0-9]+)(?:\s*-\s*(-?[0-9]+))?")


class Seeds(Sequence[int]):
    """Seeds kept as the ranges they were written as: '0-99999999' costs three numbers, not a list."""

    def __init__(self, ranges: Iterable[range]):
        self.ranges = [r for r in ranges if len(r)]

    def __len__(self) -> int:
        return sum(len(r) for r in self.ranges)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.ranges)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = index + len(self) if index < 0 else index
        for r in self.ranges:
            if 0 <= index < len(r):
                return r[index]
            index -= len(r)
        raise IndexError("seed index out of range")

    def __contains__(self, seed) -> bool:
        return any(seed in r for r in self.ranges)  # range membership is arithmetic, whatever its length

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        parts = [str(r.start) if len(r) == 1 else f"{r.start}-{r.stop - 1}" for r in self.ranges]
        return f"Seeds({','.join(parts)!r})"


def check_seed(seed, what: str = "seed") -> int:
    """`seed` as an int, when it is a whole number from 0 to MAX_SEED; else a sentence saying what a seed is."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
        return int(seed)
    raise GeneratorError(f"{what} {seed!r}: seeds are whole numbers from 0 to {MAX_SEED}.")


def parse_seeds(text: str) -> Seeds:
    """'1,7,42' or '0-9' or '0-3,10' -> the seeds, in order, as lazy ranges."""
    text = str(text).strip()
    if not text:
        raise GeneratorError("No seeds given: use e.g. --seeds 0-15.")
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        where = f"Seeds {text!r}" if part == text else f"Seeds {text!r}, at {part!r}"
        if not part:
            raise GeneratorError(f"{where}: an empty item between commas; write seeds as 1,7,42.")
        match = _SEED_PART.fullmatch(part)
        if match is None:
            raise GeneratorError(f"{where}: not a seed or a range; write seeds as whole numbers and ranges with "
                                 "one dash, such as 1,7,42 or 0-99.")
        start, end = match.group(1), match.group(2) or match.group(1)
        if start.startswith("-") or end.startswith("-"):
            raise GeneratorError(f"{where}: a negative number; seeds are whole numbers from 0 to {MAX_SEED}, "
                                 "and a range is written 0-99.")
        first, last = int(start), int(end)
        if max(first, last) > MAX_SEED:
            raise GeneratorError(f"{where}: {max(first, last)} is too large; seeds go from 0 to {MAX_SEED}.")
        if first > last:
            raise GeneratorError(f"Seed range {part} is reversed: write {last}-{first}.")
        ranges.append(range(first, last + 1))
    return Seeds(ranges)


def first_seeds(count: int) -> range:
    """Seeds 0..count-1, for 'count images' (lazy, so any count costs no memory)."""
    if not isinstance(count, numbers.Integral) or count < 1:
        raise GeneratorError(f"count={count}: ask for at least 1 image (e.g. --count 16), or give --seeds.")
    if count > MAX_SEED:
        raise GeneratorError(f"count={count} is more images than there are seeds ({MAX_SEED}).")
    return range(count)
