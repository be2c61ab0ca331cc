"""jieba's word counts held compactly: every cut and every answer as with jieba's own dict."""

from __future__ import annotations

import csv
import json
import logging
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jieba
import pytest

from synth.frontend.g2p import G2P, load_lexicon, load_vocabulary
from synth.frontend.segmenter import (
    JIEBA_VERSION,
    WordCounts,
    hold_compactly,
    segmenter_dictionary,
)

ROOT = Path(__file__).resolve().parent.parent
LEXICON_FREQ = 100000  # what G2P tells the segmenter of a lexicon word
_TEXT = re.compile(r"[\u3400-\u9fff][^\n\"'`|]{0,80}")


def tokenizer(cache_dir: Path) -> Any:
    """jieba's tokenizer over the trimmed dictionary, as G2P makes it (its dict)."""
    made = jieba.Tokenizer(str(segmenter_dictionary(cache_dir)))
    made.tmp_dir = str(cache_dir)
    made.initialize()
    return made


def add_words(made: Any) -> list[int]:
    """The words G2P adds, as it adds them; the counts jieba suggested for the vocabulary."""
    suggested = []
    for word in load_vocabulary():
        suggested.append(made.suggest_freq(word))
        made.add_word(word, freq=suggested[-1])
    for word in load_lexicon(None).entries:
        made.add_word(word, freq=LEXICON_FREQ)
    return suggested


def corpus(words: list[str]) -> list[str]:
    """Every sentence of the test and bench data, the Chinese text of the tests and docs,
    and generated text of words, word prefixes, rare characters, letters and digits."""
    texts: list[str] = []
    for path, column in (("tests/data/tn_public.tsv", "written"), ("tests/data/tn_public.tsv", "spoken"),
                         ("bench/data/ivr_public.tsv", "text"), ("bench/data/ssml_public.tsv", "said")):
        with (ROOT / path).open(encoding="utf-8") as rows:
            texts += [row[column] for row in csv.DictReader(rows, delimiter="\t")]
    for source in [*(ROOT / "tests").glob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        texts += _TEXT.findall(source.read_text(encoding="utf-8"))
    texts += load_vocabulary()
    rng = random.Random(28)
    pieces = [
        lambda: rng.choice(words),
        lambda: rng.choice(words)[: rng.randint(1, 3)],
        lambda: chr(rng.randint(0x4E00, 0x9FFF)),
        lambda: rng.choice(["ATM", "ID", "App", "wifi", "VIP", "5G", "3.5", "95588", " ", "，", "。", "？"]),
    ]
    for _ in range(3000):
        texts.append("".join(rng.choice(pieces)() for _ in range(rng.randint(1, 30))))
    return texts


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segmenter")


@pytest.fixture(scope="module")
def plain(cache_dir: Path) -> Any:
    """jieba's own: its counts in a dict."""
    made = tokenizer(cache_dir)
    add_words(made)
    assert type(made.FREQ) is dict
    return made


@pytest.fixture(scope="module")
def compact(cache_dir: Path) -> Any:
    """The tokenizer G2P reads with."""
    made = G2P(load_lexicon(None), cache_dir)._tokenizer
    assert isinstance(made.FREQ, WordCounts)
    return made


@pytest.fixture(scope="module")
def texts(plain: Any) -> list[str]:
    return corpus([w for w, n in plain.FREQ.items() if n])


def test_jieba_is_the_release_checked() -> None:
    # WordCounts stands in for a dict jieba reads and writes itself: a new release is read
    # for its uses of FREQ before JIEBA_VERSION and the pin move to it.
    assert f'"jieba=={JIEBA_VERSION}"' in (ROOT / "pyproject.toml").read_text("utf-8")
    assert jieba.__version__ == JIEBA_VERSION


def test_cuts_equal_jiebas_own(plain: Any, compact: Any, texts: list[str]) -> None:
    assert len(texts) > 3500
    assert compact.total == plain.total
    for text in texts:
        assert compact.lcut(text, HMM=False) == plain.lcut(text, HMM=False), text
        assert compact.lcut(text) == plain.lcut(text), text
        assert compact.lcut(text, cut_all=True) == plain.lcut(text, cut_all=True), text
        assert compact.lcut_for_search(text) == plain.lcut_for_search(text), text
        assert list(compact.tokenize(text, mode="search")) == list(plain.tokenize(text, mode="search"))


def fragments(texts: list[str], words: Iterator[str]) -> Iterator[str]:
    """Keys to ask for: every piece of the texts up to 8 characters, and each word made
    longer by a character, which is mostly no word, nor a word's prefix."""
    for text in texts:
        for start in range(len(text)):
            for end in range(start + 1, min(len(text), start + 8) + 1):
                yield text[start:end]
    for word in words:
        yield word + "的"
        yield word + "A"
    yield ""


def test_every_answer_equals_the_dicts(plain: Any, compact: Any, texts: list[str]) -> None:
    mine, theirs = compact.FREQ, plain.FREQ
    assert len(mine) == len(theirs)
    assert list(mine) == list(theirs)
    assert dict(mine.items()) == theirs
    for word, count in theirs.items():  # words (a count) and prefixes of words (0)
        assert word in mine
        assert mine[word] == count
        assert mine.get(word) == count
    asked = 0
    for key in fragments(texts, iter(theirs)):
        assert (key in mine) == (key in theirs), key
        assert mine.get(key) == theirs.get(key), key
        assert mine.get(key, -1) == theirs.get(key, -1), key
        asked += 1
    assert asked > 300_000
    assert 1 not in mine and mine.get(None) is None
    with pytest.raises(KeyError):
        mine["不是词语哦"]


def test_words_added_after_compaction(plain: Any, cache_dir: Path, texts: list[str]) -> None:
    made = tokenizer(cache_dir)
    assert hold_compactly(made)
    reference = tokenizer(cache_dir)
    assert add_words(made) == add_words(reference)
    assert made.total == reference.total
    assert dict(made.FREQ.items()) == reference.FREQ == plain.FREQ
    assert list(made.FREQ) == list(reference.FREQ)
    for segments in (("还款", "日"), ("尾号", "三八"), "储蓄卡"):
        assert made.suggest_freq(segments, tune=True) == reference.suggest_freq(segments, tune=True)
    made.del_word("验证码")
    reference.del_word("验证码")
    made.add_word("回音网关", freq=7)
    reference.add_word("回音网关", freq=7)
    assert dict(made.FREQ.items()) == reference.FREQ
    for text in [*texts[:400], "请输入回音网关的验证码", "您的还款日是十五日"]:
        assert made.lcut(text, HMM=False) == reference.lcut(text, HMM=False), text
        assert made.lcut(text) == reference.lcut(text), text


def test_changes_answer_as_a_dict_does() -> None:
    rng = random.Random(7)
    keys = ["", "一", "一二", "一二三", "二", "三", "四五", "A", "零", "银行", "银"]
    theirs = {k: rng.randint(0, 5) for k in keys[:7]}
    theirs["银"] = 2**40  # more than the arrays hold
    mine = WordCounts(theirs)
    for _ in range(3000):
        key = rng.choice(keys)
        if rng.random() < 0.5:
            count = rng.choice([0, 1, 9, -3, 2**33])
            mine[key] = count
            theirs[key] = count
        elif key in theirs:
            del mine[key]
            del theirs[key]
        else:
            with pytest.raises(KeyError):
                del mine[key]
        assert list(mine.items()) == list(theirs.items())
        assert len(mine) == len(theirs)
        assert all((k in mine) == (k in theirs) and mine.get(k) == theirs.get(k) for k in keys)


def test_another_release_keeps_jiebas_dict(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = tokenizer(cache_dir)
    monkeypatch.setattr(jieba, "__version__", "0.43.0")
    with caplog.at_level(logging.WARNING, logger="synth.frontend.segmenter"):
        assert not hold_compactly(made)
    assert type(made.FREQ) is dict
    assert "jieba 0.43.0" in caplog.text


def test_jiebas_file_cache_still_loads(cache_dir: Path, plain: Any) -> None:
    # The parsed dictionary jieba keeps beside ours (marshal) is its dict, as before: a
    # second G2P reads it, and holds what it read compactly.
    assert list(cache_dir.glob("jieba.u*.cache"))
    again = G2P(load_lexicon(None), cache_dir)._tokenizer
    assert isinstance(again.FREQ, WordCounts)
    assert dict(again.FREQ.items()) == plain.FREQ


_HMM_PROBE = """
import json, sys
from synth.frontend.segmenter import import_jieba
jieba = import_jieba() if sys.argv[1] == "deferred" else __import__("jieba")
from synth.frontend.g2p import G2P, load_lexicon
G2P(load_lexicon(None), __import__("pathlib").Path(sys.argv[2])).clause("请拨打客服热线，我们将为您转接人工服务。")
before = "jieba.finalseg.prob_emit" in sys.modules
texts = json.loads(sys.stdin.read())
cuts = [jieba.lcut(t) for t in texts]
jieba.del_word("清华大学")  # forces the word apart: the HMM finder's own set
cuts += [jieba.lcut(t) for t in texts]
print(json.dumps({"before": before, "cuts": cuts}))
"""


def test_jiebas_hmm_finder_loads_on_first_use_and_cuts_as_when_imported(
    cache_dir: Path, texts: list[str],
) -> None:
    sample = ["我来到北京清华大学他来到了网易杭研大厦", *random.Random(28).sample(texts, 300)]
    said = {}
    for how in ("deferred", "imported"):
        done = subprocess.run([sys.executable, "-c", _HMM_PROBE, how, str(cache_dir)], cwd=ROOT,
                              input=json.dumps(sample), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        said[how] = json.loads(done.stdout)
    assert said["deferred"]["before"] is False  # the frontend never loaded it
    assert said["imported"]["before"] is True
    assert said["deferred"]["cuts"] == said["imported"]["cuts"]
    assert ["我", "来到", "北京", "清华", "大学"] == said["deferred"]["cuts"][301][:5]
