"""Typed application state: the services every handler reaches through the app."""

from __future__ import annotations

from aiohttp import web

from cache.credentials import Credentials
from cache.lexicon import SiteLexicon
from cache.replicas import Replicas
from cache.store import PromptStore
from cache.tenants import Tenants
from cache.warm import Warmer
from config import Settings
from gateway.history import History
from gateway.metrics import Metrics
from synth.voices import Voices

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", PromptStore)
# The site's records kept on the store's storage beside the phrases (gateway/services.py).
CREDENTIALS = web.AppKey("credentials", Credentials)
TENANTS = web.AppKey("tenants", Tenants)
LEXICON = web.AppKey("lexicon", SiteLexicon)
REPLICAS = web.AppKey("replicas", Replicas)
VOICES = web.AppKey("voices", Voices)
METRICS = web.AppKey("metrics", Metrics)
WARMER = web.AppKey("warmer", Warmer)
HISTORY = web.AppKey("history", History)
