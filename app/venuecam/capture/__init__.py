"""Camera capture: one process per camera records fixed-length MPEG-TS segments and indexes them.

Modules: `command` builds the ffmpeg argv (pure), `segments` holds naming, segment-list
parsing and start-time arithmetic (pure), `indexer` validates, files and indexes finished
segments (and recovers what a crash left), `picam` is the Raspberry Pi camera source,
`recorder` is the supervised loop, `main` the `venuecam capture` subcommand.
"""
