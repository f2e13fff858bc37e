"""taskq: a task queue that runs as CGI on shared hosting.

Importing the package must stay cheap: every HTTP request is a new process.
"""

__version__ = "0.1.0"
