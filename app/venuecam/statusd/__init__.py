"""statusd: the status socket. HTTP/1.1 on a Unix socket (and optionally 127.0.0.1 TCP).

It reads the database and asks the worker to act; it never does work itself. Stdlib only.
"""
