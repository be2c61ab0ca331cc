"""The ModelScope engine's spoken form: the sentences its pipeline is asked to say."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.engine import InvalidInputError
from synth.sambert import SambertEngine
from tests.test_sambert import calls, make_model, tiny_types  # noqa: F401  (fixtures)


def test_the_form_is_what_the_pipeline_is_asked_to_say(
    tmp_path: Path, calls: list[tuple[str, str | None]],  # noqa: F811
) -> None:
    engine = SambertEngine(make_model(tmp_path / "model"))
    text = "您好，面积50m²。请按1！"
    form = engine.spoken_form(text)
    calls.clear()
    engine.synthesize(text)
    assert [said for said, _ in calls] == form.split("\n")
    assert len(form.split("\n")) == 2
    assert engine.spoken_form("½杯") == engine.spoken_form("1⁄2杯")
    assert engine.spoken_form("10²元") != engine.spoken_form("102元")
    assert engine.spoken_form("Ⅻ") != engine.spoken_form("XII")
    with pytest.raises(InvalidInputError) as err:
        engine.spoken_form("……")
    assert err.value.field == "text"
