"""Over-the-air updates: signed release bundles, a health-gated switch, automatic rollback.

bundle.py    read and verify a bundle (signature, then every file's hash) before unpacking
manifest.py  what a bundle says about itself; version rules
signing.py   ssh-keygen -Y sign / verify (OpenSSH is on the box already)
build.py     `make release`: wheels for the target Python and machine, manifest, signature
download.py  resumable HTTP(S)/S3 downloads (Range)
layout.py    /opt/venuecam/releases/<v>/, the `current` and `committed` links, installs
journal.py   the update journal (what step an update is at), its lock and history
stack.py     stopping and starting the programs (systemd or direct); running as the app user
dbops.py     SQLite online backup, restore, schema version (run as the database's owner)
gate.py      the health gate
window.py    when an update may run: no booking, no live clip, the maintenance window
engine.py    the update itself: install, switch, gate, commit or roll back; recovery
channel.py   pull mode: a signed channel file with a staged rollout
facts.py     the update's part of `venuecam status` and the LEDs
"""
