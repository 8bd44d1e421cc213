"""The one exception hierarchy of gmemlab.

Every error that reaches a user through the command line is a GmemlabError; the CLI
turns it into a message and exit status 2. Nothing else escapes as a traceback.
"""


class GmemlabError(Exception):
    """Base of every error gmemlab raises on purpose."""


class UsageError(GmemlabError):
    """A misuse of the API or the command line (unknown proposal, bad option)."""


class InputError(GmemlabError):
    """Unusable input: names the file, the line and the problem.

    >>> str(InputError("t.jsonl", 3, "unknown op 'poke'"))
    "t.jsonl:3: unknown op 'poke'"
    """

    def __init__(self, path, line, problem):
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {problem}")


class OutputError(GmemlabError):
    """An output that cannot be written (or must not be: it is the input): names the
    path and the problem, with the errno when the system refused.

    >>> str(OutputError("out.jsonl", "cannot write (ENOSPC: No space left on device)"))
    'out.jsonl: cannot write (ENOSPC: No space left on device)'
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
