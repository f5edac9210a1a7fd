"""The net layer: sockets and the I/O engine, moving bytes between clients and their sessions.

It owns the connection (:mod:`.connection`: one client's bounds, backpressure and continuation;
its hot path compiled in :mod:`._cconnection`), the compiled epoll socket driver
(:mod:`._cstream`) and its chooser and accept loop (:mod:`.streams`), listening addresses and
sockets (:mod:`.listeners`), TLS contexts (:mod:`.tls`) and TLS clients before their handshake
(:mod:`.handshake`). It parses no command: the session
does. It may import :mod:`pycache_d.protocol`, :mod:`pycache_d.store` and :mod:`pycache_d.log`,
never :mod:`pycache_d.daemon`; what a connection needs of its server is the :class:`Host`
protocol in :mod:`.connection`, which the daemon's server implements.
"""
