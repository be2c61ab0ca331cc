"""The `huiyin` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf


def huiyin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_synth_writes_a_wav_and_reports_timing(tmp_path: Path) -> None:
    out = tmp_path / "greeting.wav"
    result = huiyin("synth", "您好，请按1。", "-o", str(out), "--style", "cheerful", "--speed", "1.1")
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out, dtype="int16")
    info = sf.info(out)
    assert rate == 24000 and info.channels == 1 and info.subtype == "PCM_16"
    assert len(audio) / rate > 0.8
    assert "RTF" in result.stderr and "synthesis" in result.stderr


def test_synth_bad_style_is_a_clear_error(tmp_path: Path) -> None:
    result = huiyin("synth", "您好", "-o", str(tmp_path / "x.wav"), "--style", "angry")
    assert result.returncode == 2
    assert "style: unknown style 'angry'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_help_lists_the_commands() -> None:
    result = huiyin("--help")
    assert result.returncode == 0
    for command in ("serve", "synth", "models"):
        assert command in result.stdout


def test_cache_check_reports_and_fixes(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "HUIYIN_DATA_DIR": str(tmp_path / "data")}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "cache", "check", "--grace", "0", *extra],
            capture_output=True, text=True, timeout=60, env=env,
        )

    assert check().returncode == 0  # an empty store is clean
    stray = tmp_path / "data" / "audio" / "ab" / "cd" / ("abcd" + "0" * 28 + ".wav")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"orphan")
    found = check()
    assert found.returncode == 1 and "orphan file: ab/cd/abcd" in found.stdout
    fixed = check("--fix")
    assert fixed.returncode == 0 and "fixed" in fixed.stdout and not stray.exists()


def test_keys_are_made_listed_and_revoked_and_urls_signed(tmp_path: Path) -> None:
    import json
    import os
    import time
    import urllib.parse

    from cache.credentials import KeyTable, secret_hash
    from cache.index import Index, sqlite_url
    from gateway.signing import verify

    def keys(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
            timeout=120, env={**os.environ, "HUIYIN_DATA_DIR": str(tmp_path / "data"), **env},
        )

    made = keys("keys", "create", "--name", "ivr-east", "--scope", "play", "--rate", "30")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("hy_") and len(secret) == 46
    assert secret not in made.stderr  # the audit line names the key, never its secret
    audit = [json.loads(line) for line in made.stderr.splitlines() if line.startswith("{")]
    assert [(a["action"], a["target"]) for a in audit] == [("key_create", "ivr-east")]
    index = Index(sqlite_url(tmp_path / "data"))
    try:
        (row,) = KeyTable(index.engine).all()
        assert row.scope == "play" and row.rate == 30 and row.revoked is None
        with index.engine.connect() as connection:
            stored = connection.exec_driver_sql("SELECT secret_hash FROM api_keys").scalar()
        assert stored == secret_hash(secret)  # only the hash is at rest
    finally:
        index.close()
    again = keys("keys", "create", "--name", "ivr-east", "--scope", "play")
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    listed = keys("keys", "list", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "ivr-east" and secret not in listed.stdout
    assert keys("keys", "revoke", "ivr-east").returncode == 0
    assert json.loads(keys("keys", "list", "--json").stdout)[0]["revoked"]
    assert keys("keys", "revoke", "nobody").returncode == 1

    unsigned = keys("sign", "/tts.ulaw?text=您好")
    assert unsigned.returncode == 2 and "url_signing_secret" in unsigned.stderr
    secret_text = keys("keys", "secret").stdout.strip()
    assert len(secret_text) >= 40
    signed = keys("sign", "http://pbx.example:8080/tts.ulaw?text=请按#号键", "--ttl", "600",
                  HUIYIN_URL_SIGNING_SECRET=secret_text)
    assert signed.returncode == 0, signed.stderr
    url = signed.stdout.strip()
    assert url.startswith("http://pbx.example:8080/tts.ulaw?text=")
    target = url.removeprefix("http://pbx.example:8080")
    expires = verify("GET", target, [secret_text])
    # On an hour's boundary (url_signing_bucket), at least the ttl away.
    assert expires % 3600 == 0 and 600 < expires - time.time() < 600 + 2 * 3600
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["text"] == ["请按#号键"]


def test_the_site_lexicon_is_edited_from_the_command_line(tmp_path: Path) -> None:
    import os

    def lexicon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "lexicon", *args], capture_output=True,
            text=True, timeout=120, env={**os.environ, "HUIYIN_DATA_DIR": str(tmp_path / "data")},
        )

    added = lexicon("add", "汇音", "hui2", "yin1")
    assert added.returncode == 0, added.stderr
    assert '"action": "lexicon_put"' in added.stderr and '"target": "汇音"' in added.stderr
    assert lexicon("list").stdout == "汇音\thui2 yin1\n"
    for bad in (("汇音", "hui9", "yin1"), ("汇音", "hui2"), ("a", "ei1"), ("#汇音", "hui2", "yin1")):
        refused = lexicon("add", *bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, bad
    assert lexicon("remove", "汇音").returncode == 0
    assert lexicon("remove", "汇音").returncode == 1
    assert lexicon("list").stdout == ""


def test_cache_purge_removes_by_text_tag_and_age_and_documents_its_selectors(
    tmp_path: Path,
) -> None:
    import os

    env = {**os.environ, "HUIYIN_DATA_DIR": str(tmp_path / "data")}
    phrases = tmp_path / "menu.yaml"
    phrases.write_text("phrases:\n  - {id: hello, text: 您好。, tags: [greeting]}\n"
                       "  - {id: bye, text: 再见。, tags: [closing]}\n", encoding="utf-8")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                              text=True, timeout=120, env=env, input=stdin)

    helped = run("cache", "purge", "--help")
    assert helped.returncode == 0
    for selector in ("--key", "--text", "--tag", "--phrase-file", "--older-than", "--tenant"):
        assert selector in helped.stdout
    assert run("warm", str(phrases)).returncode == 0
    assert run("cache", "purge").returncode == 2  # nothing named: nothing removed
    tagged = run("cache", "purge", "--tag", "closing")
    assert tagged.returncode == 0 and tagged.stdout.startswith("purged 1 prompts, "), tagged.stderr
    by_text = run("cache", "purge", "--text", "-", stdin="您好。\n")  # kept out of `ps`
    assert by_text.stdout.startswith("purged 1 prompts, "), by_text.stderr
    assert run("cache", "purge", "--older-than", "0").stdout.startswith("purged 0 prompts, 0 bytes")
    bad = run("cache", "purge", "--key", "nope")
    assert bad.returncode == 2 and "--key: key must be" in bad.stderr
    assert not list((tmp_path / "data" / "audio").rglob("*.wav"))
