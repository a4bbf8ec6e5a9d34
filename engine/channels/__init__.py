"""Outbound channels: ``base`` (the interface), one module per channel, ``registry`` (the table of them).

Deliberately empty: importing ``engine.channels.base`` (as ``engine.channels.http`` does) must not import
every channel, or ``channels.twilio`` -> ``engine.channels.http`` would close an import cycle.
"""
