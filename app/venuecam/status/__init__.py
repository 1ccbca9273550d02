"""What the box knows about itself: facts collected into one snapshot, and how to show them.

`render` and `shapes` are pure and import nothing heavy (the CLI uses them); `facts` reads
the database and the OS and is used by statusd and the LED service.
"""
