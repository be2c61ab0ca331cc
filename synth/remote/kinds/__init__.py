"""The kinds of upstream: what each is asked, and how its answer becomes audio
(base.py), one module per kind, and the registry that finds a kind by its name."""

# Importing each kind's module adds it to KINDS.
from synth.remote.kinds import aliyun, cosyvoice, openai, piper, sambert_flask
from synth.remote.kinds.aliyun import aliyun_rate, aliyun_volume
from synth.remote.kinds.base import Kind, KindStartError, Prompted, Reported, Streaming
from synth.remote.kinds.registry import KINDS, kind_for

__all__ = [
    "KINDS",
    "Kind",
    "KindStartError",
    "Prompted",
    "Reported",
    "Streaming",
    "aliyun",
    "aliyun_rate",
    "aliyun_volume",
    "cosyvoice",
    "kind_for",
    "openai",
    "piper",
    "sambert_flask",
]
