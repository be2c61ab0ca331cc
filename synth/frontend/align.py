"""Which characters of a normalized text were kept from the written text, for the
preview's 'rule' marks: an alignment of the two, in time near-linear in their length.

The normalizer keeps most characters and rewrites short stretches in order (a number read
out, a symbol named, a full-width mark made ASCII). So the texts are aligned as a longest
common subsequence, in steps that each cost little:

1. The common start and end are kept as they are.
2. Characters found exactly once in each of what remains, taken in the longest run that
   is in the same order in both (patience anchors: a longest increasing subsequence,
   O(n log n)), are kept and cut the rest into independent stretches. An ordinary text
   has many such characters, so its stretches are a few characters long.
3. Each stretch is aligned exactly, 64 columns per machine word (the bit-parallel method
   of Allison and Dix, 1986, on Python integers): one Python step per character, each
   an integer operation of (columns / 64) words done in C. Only a text with no anchor
   (one pattern repeated, `，。` x 512) pays that over its whole length: for 1,024
   characters, 1,024 rows of 16 words, a few milliseconds.
4. Alignments as long as each other are common ('30十四' said '三十十四' may keep either
   十). A block of kept characters slides over characters equal to its own to join the
   block after or before it, so that kept characters form the longest runs: the written
   十四 is kept whole, and the 十 before it is the rule's. difflib's SequenceMatcher, which
   the preview used before, finds such runs by taking the longest common block first,
   at a cost of the cube of the length on repetitive texts.
"""

from __future__ import annotations

import bisect

# How many rounds of sliding blocks together (each joins every block it can; a second
# round finds what the first made possible, and more are rarely needed).
SLIDE_ROUNDS = 4


def kept_positions(written: str, normalized: str) -> set[int]:
    """Positions in `normalized` whose character is one of `written`'s, matched in order
    (a common subsequence, longest between anchors, whose kept characters form runs)."""
    blocks = _blocks(_matches(written, normalized))
    for _ in range(SLIDE_ROUNDS):
        if not _slide(written, normalized, blocks):
            break
    return {j + k for _, j, size in blocks for k in range(size)}


def _matches(a: str, b: str) -> list[tuple[int, int]]:
    """Pairs (i, j) with a[i] == b[j], increasing in both: the common start and end, the
    anchors, and a longest common subsequence of each stretch between them."""
    start, a_end, b_end = 0, len(a), len(b)
    while start < a_end and start < b_end and a[start] == b[start]:
        start += 1
    tail: list[tuple[int, int]] = []
    while a_end > start and b_end > start and a[a_end - 1] == b[b_end - 1]:
        a_end -= 1
        b_end -= 1
        tail.append((a_end, b_end))
    pairs = [(k, k) for k in range(start)]
    a_at, b_at = start, start
    for a_anchor, b_anchor in _anchors(a, b, start, a_end, start, b_end):
        pairs.extend(_subsequence(a, b, a_at, a_anchor, b_at, b_anchor))
        pairs.append((a_anchor, b_anchor))
        a_at, b_at = a_anchor + 1, b_anchor + 1
    pairs.extend(_subsequence(a, b, a_at, a_end, b_at, b_end))
    pairs.extend(reversed(tail))
    return pairs


def _anchors(a: str, b: str, a_lo: int, a_hi: int, b_lo: int, b_hi: int) -> list[tuple[int, int]]:
    """Pairs (i, j), increasing in both, of characters found once in a[a_lo:a_hi] and once
    in b[b_lo:b_hi]: the most of them that keep one order (patience sorting)."""
    once_in_a = _once(a, a_lo, a_hi)
    once_in_b = _once(b, b_lo, b_hi)
    pairs = sorted((i, once_in_b[c]) for c, i in once_in_a.items() if c in once_in_b)
    tails: list[int] = []  # tails[k]: the least b position that ends an increasing run of k + 1
    tail_at: list[int] = []  # which pair each tail is
    previous: list[int] = []  # each pair's predecessor in the longest run ending at it
    for index, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_at.append(index)
        else:
            tails[k] = j
            tail_at[k] = index
        previous.append(tail_at[k - 1] if k else -1)
    chain: list[tuple[int, int]] = []
    index = tail_at[-1] if tail_at else -1
    while index >= 0:
        chain.append(pairs[index])
        index = previous[index]
    return chain[::-1]


def _once(text: str, lo: int, hi: int) -> dict[str, int]:
    """The characters found exactly once in text[lo:hi], and where."""
    seen: dict[str, int] = {}
    repeated: set[str] = set()
    for i in range(lo, hi):
        char = text[i]
        if char in seen:
            repeated.add(char)
        else:
            seen[char] = i
    for char in repeated:
        del seen[char]
    return seen


def _subsequence(a: str, b: str, a_lo: int, a_hi: int, b_lo: int, b_hi: int) -> list[tuple[int, int]]:
    """A longest common subsequence of a[a_lo:a_hi] and b[b_lo:b_hi] as pairs (i, j): read
    from the start, equal characters are taken at once, else a differing pair is taken as
    one rewritten into the other, else b's character as one a rule wrote."""
    n, m = a_hi - a_lo, b_hi - b_lo
    if not n or not m:
        return []
    masks: dict[str, int] = {}
    for t in range(m):
        char = b[b_hi - 1 - t]
        masks[char] = masks.get(char, 0) | (1 << t)
    full = (1 << m) - 1
    # ends[k], bit t: 0 where the longest common subsequence of the stretch of a's last k
    # characters and b's last t + 1 is one longer than with b's last t (Allison and Dix's
    # rows, on the stretches reversed so that the walk below goes forward).
    ends = [full]
    row = full
    for i in range(a_hi - 1, a_lo - 1, -1):
        matched = row & masks.get(a[i], 0)
        row = ((row + matched) | (row - matched)) & full
        ends.append(row)

    def common(i: int, j: int) -> int:
        """The longest common subsequence of a[i:a_hi] and b[j:b_hi]."""
        return b_hi - j - (ends[a_hi - i] & ((1 << (b_hi - j)) - 1)).bit_count()

    pairs: list[tuple[int, int]] = []
    i, j = a_lo, b_lo
    length = common(i, j)
    while length:
        if a[i] == b[j]:  # a match always lies on a longest path
            pairs.append((i, j))
            length -= 1
            i += 1
            j += 1
        elif common(i + 1, j + 1) == length:  # a[i] rewritten as b[j]
            i += 1
            j += 1
        elif ends[a_hi - i] >> (b_hi - j - 1) & 1:  # as long without b[j]: a rule wrote it
            j += 1
        else:  # as long without a[i]: a rule took it
            i += 1
    return pairs


def _blocks(pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Runs of pairs that follow each other in both texts, as [i, j, size]."""
    blocks: list[list[int]] = []
    for i, j in pairs:
        if blocks and blocks[-1][0] + blocks[-1][2] == i and blocks[-1][1] + blocks[-1][2] == j:
            blocks[-1][2] += 1
        else:
            blocks.append([i, j, 1])
    return blocks


def _slide(a: str, b: str, blocks: list[list[int]]) -> bool:
    """Join neighbouring blocks where one can slide onto equal characters next to the
    other (the count kept stays the same); True when any were joined."""
    joined = False
    k = len(blocks) - 2
    while k >= 0:  # a block slides forward to join the next one
        (i, j, size), (i2, j2, _) = blocks[k], blocks[k + 1]
        if i + size == i2 and b[j2 - size : j2] == a[i:i2]:
            blocks[k + 1] = [i, j2 - size, size + blocks[k + 1][2]]
            del blocks[k]
            joined = True
        elif j + size == j2 and a[i2 - size : i2] == b[j:j2]:
            blocks[k + 1] = [i2 - size, j, size + blocks[k + 1][2]]
            del blocks[k]
            joined = True
        k -= 1
    k = 0
    while k < len(blocks) - 1:  # a block slides back to join the one before
        (i, j, size), (i2, j2, size2) = blocks[k], blocks[k + 1]
        if i + size == i2 and b[j + size : j + size + size2] == a[i2 : i2 + size2]:
            blocks[k][2] += size2
            del blocks[k + 1]
            joined = True
        elif j + size == j2 and a[i + size : i + size + size2] == b[j2 : j2 + size2]:
            blocks[k][2] += size2
            del blocks[k + 1]
            joined = True
        else:
            k += 1
    return joined
