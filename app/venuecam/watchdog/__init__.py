"""The watchdog program: connectivity probes, the published state, queue wake-up, LEDs."""
