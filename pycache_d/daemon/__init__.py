"""The daemon layer: the process's lifecycle around the layers below it.

It owns the command line and configuration (:mod:`.config`), the entry point (:mod:`.main`),
the running server with its listeners, signals, reloads and shutdown (:mod:`.server`), warm
restart (:mod:`.warmstart`; the file format is :mod:`.snapshot`'s), systemd's notifications and
socket activation (:mod:`.systemd`) and the wall-clock watch (:mod:`.wallclock`). It may import
every layer (:mod:`pycache_d.net`, :mod:`pycache_d.protocol`, :mod:`pycache_d.store`,
:mod:`pycache_d.log`); nothing imports it but the package's entry points
(``pycache_d.__main__``, the ``pycache-d`` command).
"""
