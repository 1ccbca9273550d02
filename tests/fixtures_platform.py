"""Fixtures for the booking platform simulator (filled in with the simulator)."""
