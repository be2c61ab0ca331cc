"""WeTextProcessing's Chinese normalizer, run from its FSTs through pywrapfst alone.

WeTextProcessing (WETEXT_VERSION, pinned and checked) ships its normalizer built: a tagger
FST that marks the numbers, dates, times, amounts and measures of a text as tokens, and a
verbalizer FST that reads the tokens out. Its `Normalizer` reads them with pynini, optimizes
them, and builds pynini's helper FSTs: about 20 MB resident in all, most of it pynini and
its libraries, which reading a text never needs. Running the two FSTs needs only OpenFst's
own binding, pywrapfst, which comes with pynini.

So a child process (whose memory goes back when it exits) has WeTextProcessing load them as
it does, and writes them as const FSTs with their arcs sorted into a cache folder, once per
release of WeTextProcessing and pynini; the serving process reads those files, and a text
goes through them as WeTextProcessing sends it: its UTF-8 bytes as a string acceptor
composed with the tagger, the one best path's output put in WeTextProcessing's token order
(its `TokenParser`, plain Python), that composed with the verbalizer, and the one best
path's output read back as text. A test checks the readings equal WeTextProcessing's own.

usage: python -m synth.frontend.wetext FOLDER   (writes the two FSTs into FOLDER)
"""

from __future__ import annotations

import logging
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from synth.child import run_module, write_atomically

log = logging.getLogger(__name__)

WETEXT_VERSION = "1.2.0"
# Seconds the child process may take to write the FSTs (it takes about half a second).
WRITE_TIMEOUT = 120
_PARTS = ("verbalizer", "tagger")  # written in this order: the tagger's file says both are there


class WeTextError(ValueError):
    """WeTextProcessing's FSTs have no reading for a text."""


def check_version() -> None:
    """Raise ImportError unless the pinned WeTextProcessing is installed: the files read
    here (and their layout) are that release's."""
    installed = metadata.version("WeTextProcessing")
    if installed != WETEXT_VERSION:
        raise ImportError(f"the frontend reads WeTextProcessing {WETEXT_VERSION}'s files; "
                          f"{installed} is installed")


def plain_table() -> dict[int, str]:
    """WeTextProcessing's character tables as one str.translate table: traditional to
    simplified characters, full-width to half-width marks, its dropped interjections."""
    check_version()
    data = resources.files("tn").joinpath("chinese").joinpath("data")  # one step at a time: 3.10
    table: dict[int, str] = {}
    for name in ("traditional_to_simple.tsv", "fullwidth_to_halfwidth.tsv"):
        for line in data.joinpath("char").joinpath(name).read_text("utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and len(parts[0]) == 1:
                table[ord(parts[0])] = parts[1]
    for line in data.joinpath("default").joinpath("blacklist.tsv").read_text("utf-8").splitlines():
        if len(line.strip()) == 1:
            table[ord(line.strip())] = ""
    return table


def fst_paths(folder: Path) -> dict[str, Path]:
    """Where the FSTs are kept in `folder`, named by the releases that made them."""
    made_by = f"wetext{WETEXT_VERSION}-pynini{metadata.version('pynini')}"
    return {part: folder / f"{made_by}.zh_tn_{part}.const.fst" for part in _PARTS}


def _loaded_by_wetext() -> dict[str, Any]:
    """The tagger and verbalizer as WeTextProcessing loads them (this imports pynini), each
    as a const FST with its input labels sorted."""
    import pywrapfst
    from tn.chinese.normalizer import Normalizer

    logging.getLogger("wetext").setLevel(logging.WARNING)  # it logs every load at INFO
    normalizer = Normalizer(remove_erhua=False)
    fsts = {}
    for part in _PARTS:
        fst = getattr(normalizer, part)
        fst.arcsort("ilabel")
        fsts[part] = pywrapfst.convert(fst, "const")
    return fsts


def write_fsts(folder: Path) -> None:
    """Write the FSTs into `folder`, each atomically."""
    check_version()
    folder.mkdir(parents=True, exist_ok=True)
    fsts = _loaded_by_wetext()
    for part, target in fst_paths(folder).items():
        write_atomically(target, fsts[part].write, 0o644)


def _written_in_child(folder: Path) -> str:
    """write_fsts in a child process; what went wrong, or "" when the files are there."""
    failure = run_module("synth.frontend.wetext", str(folder), timeout=WRITE_TIMEOUT)
    if failure:
        return failure
    return "" if all(p.is_file() for p in fst_paths(folder).values()) else "no files"


class WeTextNormalizer:
    """WeTextProcessing's Chinese text normalization, from its FSTs kept in `folder`
    (written there first when missing). Not thread-safe: one call at a time."""

    def __init__(self, folder: Path) -> None:
        check_version()
        import pywrapfst
        from tn.token_parser import TokenParser  # plain Python: no pynini

        self._fst = pywrapfst
        self._reorder = TokenParser("tn").reorder
        paths = fst_paths(folder)
        failure = "" if paths["tagger"].is_file() else _written_in_child(folder)
        if failure:
            log.warning("could not write WeTextProcessing's FSTs to %s (%s); loading them "
                        "with pynini in this process", folder, failure)
            fsts = _loaded_by_wetext()
        else:
            fsts = {part: pywrapfst.Fst.read(str(path)) for part, path in paths.items()}
        self.tagger, self.verbalizer = fsts["tagger"], fsts["verbalizer"]
        self._one = pywrapfst.Weight.one(self.tagger.weight_type())

    def normalize(self, text: str) -> str:
        """The text with its written forms spelled out in Chinese characters."""
        return self.verbalize(self.tag(text))

    def tag(self, text: str) -> str:
        """The tagger's one best reading of the text, as tokens such as
        `cardinal { integer: "三" }`."""
        return self._best(text, self.tagger) if text else ""

    def verbalize(self, tagged: str) -> str:
        """Tokens read out."""
        return self._best(self._reorder(tagged), self.verbalizer) if tagged else ""

    def _best(self, text: str, fst: Any) -> str:
        lattice = self._fst.compose(self._acceptor(text.encode("utf-8")), fst)
        path = self._fst.shortestpath(lattice, nshortest=1, unique=True)
        state = path.start()
        if state == self._fst.NO_STATE_ID:
            raise WeTextError("WeTextProcessing has no reading for the text")
        out = bytearray()
        while True:
            arc = next(iter(path.arcs(state)), None)
            if arc is None:
                return out.decode("utf-8", errors="replace")
            if arc.olabel:
                out.append(arc.olabel)
            state = arc.nextstate

    def _acceptor(self, data: bytes) -> Any:
        """The bytes as a string FST (byte labels; 0 is epsilon, so a NUL is dropped)."""
        data = data.replace(b"\0", b"")
        fst = self._fst.VectorFst()
        fst.add_states(len(data) + 1)
        fst.set_start(0)
        for i, byte in enumerate(data):
            fst.add_arc(i, self._fst.Arc(byte, byte, self._one, i + 1))
        fst.set_final(len(data))
        return fst


def main() -> int:
    write_fsts(Path(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
