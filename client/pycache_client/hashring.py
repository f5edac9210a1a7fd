"""Ketama consistent hashing: which server owns a key.

Every server gets ``160 * weight`` points on a 32-bit circle: for ``i`` in ``range(40 * weight)``
the MD5 of ``"<name>-<i>"`` yields four little-endian 32-bit points (libketama's layout). A key
hashes to the first 4 bytes of its MD5 (little-endian) and belongs to the server owning the
first point at or after it, wrapping at the top.

Invariant: ``_points`` is sorted and ``_owners[i]`` owns ``_points[i]``. Adding a server only
inserts points, so only keys falling just before the new points change owner: about
``1/N`` of them, all moving to the new server; removing one moves only that server's keys.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from typing import Generic, TypeVar

N = TypeVar("N")

#: MD5s per unit of weight; each gives 4 points, so 160 points per server of weight 1.
HASHES_PER_WEIGHT = 40


def key_hash(key: bytes) -> int:
    """Return the ketama position of a key on the circle."""
    return int.from_bytes(hashlib.md5(key, usedforsecurity=False).digest()[:4], "little")


class HashRing(Generic[N]):
    """An immutable-by-convention ring of nodes, each named by ``name_of(node)``."""

    def __init__(self, nodes: Iterable[tuple[str, N, int]] = ()) -> None:
        """Build the ring from ``(name, node, weight)`` triples."""
        pairs: list[tuple[int, N]] = []
        for name, node, weight in nodes:
            for i in range(HASHES_PER_WEIGHT * weight):
                digest = hashlib.md5(f"{name}-{i}".encode(), usedforsecurity=False).digest()
                for j in range(4):
                    pairs.append((int.from_bytes(digest[4 * j : 4 * j + 4], "little"), node))
        # NOTE: ties (two points equal) are astronomically rare; sort by point only so the order
        # of equal points is the order of insertion, deterministic for a given server list.
        pairs.sort(key=lambda p: p[0])
        self._points = [p for p, _ in pairs]
        self._owners = [n for _, n in pairs]

    def __len__(self) -> int:
        return len(self._points)

    def get(self, key: bytes) -> N:
        """Return the node owning ``key``.

        Raises:
            LookupError: the ring is empty.
        """
        if not self._points:
            raise LookupError("hash ring is empty")
        i = bisect.bisect_left(self._points, key_hash(key))
        return self._owners[i if i < len(self._points) else 0]
