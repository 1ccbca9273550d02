"""The booking platform side: parsing its pages, the HTTP client, and the booking sync.

`parse` is pure; `client` does HTTP; `sync` writes the `bookings` table. Import the
submodules directly (`from venuecam.booking.sync import sync_bookings`).
"""
