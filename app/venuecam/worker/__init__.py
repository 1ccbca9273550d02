"""The worker program: a huey consumer executing ledger rows and periodic duties."""
