#!/usr/bin/env python3
"""Floor (a): the cheapest Python CGI there is. Prints a header and `{}`."""
import sys

sys.stdout.write("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{}\n")
