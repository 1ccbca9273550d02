"""venuecam: a Raspberry Pi recording appliance for sports venues."""

__version__ = "0.1.0"
