"""A booking platform simulator (booking-api.md) in its own process, for the demo and tests.

`schedule` generates bookings (pure), `state` holds what the simulator knows and received,
`server` speaks HTTP (stdlib only), `main` is `venuecam simulator`.
"""
