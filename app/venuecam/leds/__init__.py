"""The three status LEDs: `patterns` chooses (pure), `service` drives gpiozero and records."""
