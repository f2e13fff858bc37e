"""taskq: a task queue that runs as CGI on shared hosting.

Importing the package must stay cheap: every HTTP request is a new process.
So the one rule about imports inside functions, for every module here: a
module that only some functions need and that costs start-up time
(jsonschema, json, secrets, random, datetime, PyMySQL, a route module) is
imported in the function that needs it; everything else at the top.
docs/architecture.md has the floors the imports follow.
"""

__version__ = "0.5.0"
