"""Aliyun NLS speech synthesis: its REST routes and its WebSocket, from the same store."""

from gateway.aliyun.routes import add_aliyun_routes

__all__ = ["add_aliyun_routes"]
