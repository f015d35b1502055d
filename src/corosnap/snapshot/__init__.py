"""Snapshot orchestration: capture and restore built on frames, bytecode and
codec.  Pure and synchronous: no I/O beyond a caller's file object."""

from ._api import Pickler, Snapshotter, dump, dumps, load, loads

__all__ = ["Pickler", "Snapshotter", "dump", "dumps", "load", "loads"]
