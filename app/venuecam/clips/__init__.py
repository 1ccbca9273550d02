"""Cutting a booking's clip from recorded segments: plan (pure), assemble (ffmpeg), service (rows)."""
