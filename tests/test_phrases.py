"""pypinyin's phrase readings, loaded compactly."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path

from synth.frontend.phrases import PYPINYIN_VERSION, PhrasePrefixes, compact_readings, load_pypinyin
from tests.test_segmenter import corpus

REPO = Path(__file__).resolve().parents[1]


def test_the_release_whose_layout_is_read_is_the_one_pinned_and_installed() -> None:
    # pyproject.toml's own text (tomllib is not in Python 3.10's standard library).
    pinned = re.findall(r'"pypinyin==([^"]+)"', (REPO / "pyproject.toml").read_text("utf-8"))
    assert pinned == [PYPINYIN_VERSION]
    assert metadata.version("pypinyin") == PYPINYIN_VERSION


def test_compact_readings_equal_pypinyins_own_and_are_shared() -> None:
    source = resources.files("pypinyin") / "phrases_dict.json"
    own = json.loads(source.read_text("utf-8"))
    with source.open("r", encoding="utf-8") as lines:
        compact = compact_readings(lines)
    assert compact == own and len(compact) > 40_000
    assert any(len(r) > 1 for v in compact.values() for r in v)  # heteronyms kept
    distinct = {id(r) for v in compact.values() for r in v}
    assert len(distinct) < 2_000 < sum(len(v) for v in compact.values())


def test_the_frontend_loads_pypinyin_with_compact_phrases() -> None:
    probe = (
        "import sys\n"
        "from synth.frontend.phrases import load_pypinyin\n"
        "phrases = load_pypinyin()\n"
        "import pypinyin.constants as c\n"
        "from pypinyin import Style, lazy_pinyin\n"
        "assert phrases is c.PHRASES_DICT and len(phrases) > 40_000\n"
        "assert 'pypinyin.phrases_dict' not in sys.modules\n"
        "from pypinyin.seg import mmseg\n"
        "from synth.frontend.phrases import PhrasePrefixes\n"
        "assert isinstance(mmseg.seg._prefix_set, PhrasePrefixes)\n"
        "print(' '.join(lazy_pinyin('银行行长重新调整', style=Style.TONE3)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["yin2", "hang2", "hang2", "zhang3", "chong2", "xin1",
                                   "tiao2", "zheng3"]


def test_phrase_prefixes_answer_and_cut_as_pypinyins_prefix_set() -> None:
    phrases = load_pypinyin()
    from pypinyin.seg import mmseg

    own = mmseg.PrefixSet()
    own.train(phrases.keys())
    ours = PhrasePrefixes()
    ours.train(phrases.keys())
    rng = random.Random(28)
    words = list(phrases)
    asked = {w[: rng.randint(1, len(w))] for w in rng.sample(words, 5000)}
    asked |= {w + chr(rng.randint(0x4E00, 0x9FFF)) for w in rng.sample(words, 5000)}
    asked |= {"".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 3)))
              for _ in range(5000)}
    held = sum(a in own for a in asked)
    assert held > 3000 and len(asked) - held > 3000  # both answers are asked for
    assert [a in ours for a in asked] == [a in own for a in asked]
    pypinyins, with_ours = mmseg.Seg(own, no_non_phrases=True), mmseg.Seg(ours, no_non_phrases=True)
    texts = corpus(words)
    assert [list(with_ours.cut(t)) for t in texts] == [list(pypinyins.cut(t)) for t in texts]
    # Trained on more words, as pypinyin's load functions do.
    own.train(["祖国万岁"])
    ours.train(["祖国万岁"])
    assert ("祖国万" in ours) == ("祖国万" in own) == True  # noqa: E712
