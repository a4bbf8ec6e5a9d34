"""Outbound channels: ``base`` (the interface), one module per channel, ``registry`` (the table of them).

Deliberately empty: importing ``engine.channels.base`` (as ``engine.http`` does) must not import
every channel, or ``channels.twilio`` -> ``engine.http`` would close an import cycle.
"""
