"""The live path: a booking's video built and uploaded while the booking is played."""
