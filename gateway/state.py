"""Typed application state: the services every handler reaches through the app."""

from __future__ import annotations

from aiohttp import web

from cache.store import PromptStore
from cache.warm import Warmer
from config import Settings
from gateway.history import History
from gateway.metrics import Metrics
from synth.voices import Voices

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", PromptStore)
VOICES = web.AppKey("voices", Voices)
METRICS = web.AppKey("metrics", Metrics)
WARMER = web.AppKey("warmer", Warmer)
HISTORY = web.AppKey("history", History)
