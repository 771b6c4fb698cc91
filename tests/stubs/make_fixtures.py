#!/usr/bin/env python3
"""Regenerates the binary fixtures of tests/fixtures (the guide's two images).

oceanix_01.jpg and oceanix_02.jpg are small real baseline JPEGs (grayscale,
48x32) produced by the pure-Python encoder in common.py, so the fixtures need
no image tooling. Run from anywhere: python3 tests/stubs/make_fixtures.py
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))


def hull(x, y):
    """A dark hull below a lighter sky with a wavy waterline."""
    water = 20 + 3 * math.sin(x / 4.0)
    return 200 - 2 * y if y < water else 60 + (x * 3) % 40


def deck(x, y):
    """Deck planks with a bright repaired patch."""
    base = 120 + (40 if (y // 4) % 2 else 0)
    return 235 if 18 <= x < 30 and 10 <= y < 20 else base


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, fn in (("oceanix_01.jpg", hull), ("oceanix_02.jpg", deck)):
        data = common.encode_jpeg_gray(48, 32, lambda x, y: max(0, min(255, int(fn(x, y)))))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print("%s %d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
