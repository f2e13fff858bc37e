"""Entry point for hosts that run Python web apps under Phusion Passenger."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from taskq.app import application  # noqa: E402,F401
