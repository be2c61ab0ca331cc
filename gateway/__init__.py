"""HTTP edge: the aiohttp application and the `huiyin` command."""

from gateway.app import create_app

__all__ = ["create_app"]
