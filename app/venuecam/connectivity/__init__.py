"""Is the box online? Layered probes, a hysteresis state machine, and the published state.

`probes` runs one round of probes, `machine` turns rounds into ONLINE/OFFLINE without
flapping, `routes` reads the kernel's routing table, `state` is what other processes read.
"""
